//go:build !linux

package bench

import "errors"

// errNoCPUAccounting: CPU per op is measured on Linux only.
var errNoCPUAccounting = errors.New("CPU accounting is implemented for Linux only")

func selfCPU() (cpuTime, error)        { return cpuTime{}, errNoCPUAccounting }
func procCPU(pid int) (cpuTime, error) { return cpuTime{}, errNoCPUAccounting }
