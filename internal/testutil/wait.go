package testutil

import (
	"fmt"
	"testing"
	"time"
)

// DefaultWait is the deadline of Wait. It is a safety net against hangs on
// a machine shared by several test runs, not a performance assertion: the
// conditions tests wait for normally hold within milliseconds.
const DefaultWait = 30 * time.Second

// Polling backoff: the first re-check comes after pollFirst, and each gap
// doubles up to pollMax. A condition that is met quickly is seen quickly,
// and a slow one (an election, a catch-up) costs few wasted calls.
const (
	pollFirst = time.Millisecond
	pollMax   = 20 * time.Millisecond
)

// Poll calls cond until it returns true or d has passed, and reports
// whether it returned true. cond is always called at least once. Unlike
// WaitFor it does not touch a testing.TB, so any goroutine may call it,
// and a caller for whom a timeout is not a failure can go on.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	gap := pollFirst
	for !cond() {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(gap, left))
		gap = min(2*gap, pollMax)
	}
	return true
}

// Await is Poll that returns an error naming what was awaited, for
// goroutines other than the test's (which must not call t.Fatal).
func Await(d time.Duration, what string, cond func() bool) error {
	if !Poll(d, cond) {
		return fmt.Errorf("timed out after %v waiting for %s", d, what)
	}
	return nil
}

// WaitFor waits until cond returns true, and fails the test, naming what,
// if d passes first. Tests wait on a condition like this instead of
// sleeping a guessed time.
//
// REQUIRES: called from the test's own goroutine (it may call t.Fatal).
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Await(d, what, cond); err != nil {
		t.Fatal(err)
	}
}

// Wait is WaitFor with DefaultWait.
//
// REQUIRES: called from the test's own goroutine.
func Wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, DefaultWait, what, cond)
}
