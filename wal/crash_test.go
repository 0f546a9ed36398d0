package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// Environment variables that turn the test binary into a crash-test child.
const (
	crashDirEnv  = "WAL_CRASH_CHILD_DIR"
	crashSeedEnv = "WAL_CRASH_CHILD_SEED"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		lockChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed)
		os.Exit(0)
	}
	// Every test closes its logs, so no writer goroutine may outlive them.
	goleak.VerifyTestMain(m)
}

// crashData is the data of entry i in the crash test: a length and bytes
// that depend only on i, so the parent can check every recovered entry.
func crashData(i uint64) []byte {
	return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, int(4+i%97))
}

// crashChild appends as fast as it can from several goroutines and prints
// the last index of each batch once its completion fired. It runs until it
// is killed. Every so often it compacts below what was reported, so that
// segment removal is crashed into too.
func crashChild(dir string, seed uint64) {
	l, err := Open(dir, Options{SegmentBytes: 256 << 10, CacheBytes: 1 << 20, Logger: quietLogger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex // orders index assignment with AppendAsync calls
	next := l.LastIndex() + 1
	var reported atomic.Uint64
	const appenders = 8
	for g := 0; g < appenders; g++ {
		go func() {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			ch := make(chan error, 1)
			done := func(err error) { ch <- err }
			var line []byte
			for {
				n := uint64(1 + rng.IntN(8))
				mu.Lock()
				es := make([]wire.Entry, n)
				for i := range es {
					idx := next + uint64(i)
					es[i] = wire.Entry{Index: idx, Term: 1, Data: crashData(idx)}
				}
				var hs *wire.HardState
				if rng.IntN(4) == 0 {
					hs = &wire.HardState{Term: 1, Commit: next - 1}
				}
				next += n
				l.AppendAsync(es, hs, done)
				mu.Unlock()
				if err := <-ch; err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				last := es[n-1].Index
				line = strconv.AppendUint(line[:0], last, 10)
				line = append(line, '\n')
				os.Stdout.Write(line) // one short write: atomic on a pipe
				for {
					r := reported.Load()
					if last <= r || reported.CompareAndSwap(r, last) {
						break
					}
				}
			}
		}()
	}
	for {
		time.Sleep(20 * time.Millisecond) // pacing of compactions, not a wait for a condition
		if r := reported.Load(); r > 2000 {
			if err := l.CompactPrefix(r-2000, nil); err != nil {
				fmt.Fprintln(os.Stderr, "child compact:", err)
				os.Exit(4)
			}
		}
	}
}

// TestCrashKill runs the child, SIGKILLs it at a random moment, reopens the
// log and checks that every batch the child reported durable is there and
// that the log is a contiguous prefix of what was appended; three rounds per
// seed on the same directory, so recovered logs are crashed again.
// (SIGKILL loses no page-cache data; torn writes and power loss are
// covered by TestRecoverTornTailEveryOffset and the crashfs tests.) It runs
// on vfs.Default: the real file system, fdatasync and lock.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const seeds, rounds = 8, 3
	for s := uint64(1); s <= seeds; s++ {
		seed := s * 7919
		dir := t.TempDir()
		var maxReported uint64
		rng := rand.New(rand.NewPCG(seed, 1))
		for round := 0; round < rounds; round++ {
			where := fmt.Sprintf("seed %d round %d", seed, round)
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed*10+uint64(round), 10))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var lines atomic.Int64
			var mu sync.Mutex
			var reported []uint64
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					v, err := strconv.ParseUint(sc.Text(), 10, 64)
					if err != nil {
						continue
					}
					mu.Lock()
					reported = append(reported, v)
					mu.Unlock()
					lines.Add(1)
				}
			}()
			if !testutil.Poll(20*time.Second, func() bool { return lines.Load() >= 20 }) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s: child reported nothing; stderr: %s", where, stderr.String())
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // the random moment of the crash
			cmd.Process.Signal(syscall.SIGKILL)
			<-readDone
			cmd.Wait()
			if stderr.Len() > 0 {
				t.Fatalf("%s: child stderr: %s", where, stderr.String())
			}
			for _, v := range reported {
				maxReported = max(maxReported, v)
			}

			l, err := Open(dir, Options{SegmentBytes: 256 << 10, Logger: quietLogger}) // small: the preparer zero-fills one
			if err != nil {
				t.Fatalf("%s: reopen: %v", where, err)
			}
			first, last := l.FirstIndex(), l.LastIndex()
			if last < maxReported {
				t.Fatalf("%s: LastIndex %d, but the child reported %d durable", where, last, maxReported)
			}
			if tm, err := l.Term(first - 1); first > 1 && (err != nil || tm != 1) {
				t.Fatalf("%s: marker term %d, %v", where, tm, err)
			}
			if hs := l.HardState(); hs.Commit > last || (hs.Term != 1 && !hs.IsEmpty()) {
				t.Fatalf("%s: hard state %+v with last index %d", where, hs, last)
			}
			for lo := first; lo <= last; {
				es, err := l.Entries(lo, last+1, 1<<20)
				if err != nil {
					t.Fatalf("%s: Entries(%d): %v", where, lo, err)
				}
				for _, e := range es {
					if e.Index != lo || e.Term != 1 || !bytes.Equal(e.Data, crashData(lo)) {
						t.Fatalf("%s: entry %d wrong: index %d term %d, %d bytes", where, lo, e.Index, e.Term, len(e.Data))
					}
					lo++
				}
			}
			t.Logf("%s: %d batches reported, log [%d, %d]", where, len(reported), first, last)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
