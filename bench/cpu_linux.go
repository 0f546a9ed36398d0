package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of /proc/PID/stat's times. The
// kernel fixes it at 100 for user space on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK) would need cgo to ask).
const clockTicksPerSecond = 100

// selfCPU is this process's user and system time from getrusage.
func selfCPU() (cpuTime, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTime{}, err
	}
	return cpuTime{
		user: time.Duration(ru.Utime.Nano()),
		sys:  time.Duration(ru.Stime.Nano()),
	}, nil
}

// procCPU reads utime and stime (fields 14 and 15) of /proc/PID/stat.
func procCPU(pid int) (cpuTime, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return cpuTime{}, err
	}
	return parseProcStat(b)
}

// parseProcStat extracts utime and stime from a /proc/PID/stat line. The
// second field (the command name, in parentheses) may itself contain
// spaces and parentheses, so fields are counted from the last ')'.
func parseProcStat(b []byte) (cpuTime, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuTime{}, errors.New("no ')' in /proc stat line")
	}
	// After ")": field 3 (state) is at index 0, so field N is at N-3.
	f := bytes.Fields(b[i+1:])
	const utimeAt, stimeAt = 14 - 3, 15 - 3
	if len(f) <= stimeAt {
		return cpuTime{}, fmt.Errorf("/proc stat line has %d fields after the name, want more than %d", len(f), stimeAt)
	}
	ut, err1 := strconv.ParseUint(string(f[utimeAt]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[stimeAt]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return cpuTime{}, fmt.Errorf("/proc stat times: %w", err)
	}
	tick := time.Second / clockTicksPerSecond
	return cpuTime{user: time.Duration(ut) * tick, sys: time.Duration(st) * tick}, nil
}
