package testutil

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollSeesACondition(t *testing.T) {
	var calls atomic.Int64
	ok := Poll(time.Minute, func() bool { return calls.Add(1) >= 3 })
	if !ok || calls.Load() != 3 {
		t.Fatalf("Poll = %v after %d calls, want true after 3", ok, calls.Load())
	}
}

func TestPollGivesUp(t *testing.T) {
	start := time.Now()
	if Poll(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll of a false condition returned true")
	}
	if el := time.Since(start); el < 30*time.Millisecond || el > 5*time.Second {
		t.Fatalf("Poll gave up after %v, want about 30ms", el)
	}
}

func TestAwaitNamesTheCondition(t *testing.T) {
	err := Await(time.Millisecond, "the moon", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "the moon") {
		t.Fatalf("Await error = %v, want one naming the condition", err)
	}
	if err := Await(time.Millisecond, "now", func() bool { return true }); err != nil {
		t.Fatalf("Await of a true condition: %v", err)
	}
}

// fatalTB records a Fatal instead of stopping the goroutine.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...) }

func TestWaitForFailsWithTheDescription(t *testing.T) {
	f := &fatalTB{TB: t}
	WaitFor(f, time.Millisecond, "a leader", func() bool { return false })
	if !strings.Contains(f.msg, "waiting for a leader") {
		t.Fatalf("WaitFor failed with %q, want the description in it", f.msg)
	}
}
