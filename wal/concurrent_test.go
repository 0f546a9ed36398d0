package wal

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentReadersAndCompaction runs an appender, a compactor and
// readers at once (meaningful under -race): readers must only ever see
// correct entries or ErrCompacted, also while segments are being removed.
func TestConcurrentReadersAndCompaction(t *testing.T) {
	o := memOpts()
	o.CacheBytes = 2 << 10 // most reads go to disk
	l := mustOpen(t, testDir, o)
	defer l.Close()
	const total = 3000
	var appended atomic.Uint64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	wg.Add(1)
	go func() { // appender
		defer wg.Done()
		for i := uint64(1); i <= total; i += 10 {
			if err := l.Append(mkEntries(i, i+10, 1), nil); err != nil {
				errc <- err
				return
			}
			appended.Store(i + 9)
		}
	}()
	wg.Add(1)
	go func() { // compactor
		defer wg.Done()
		for appended.Load() < total {
			if a := appended.Load(); a > 500 {
				if err := l.CompactPrefix(a-500, nil); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() { // reader
			defer wg.Done()
			for appended.Load() < total {
				first, last := l.FirstIndex(), l.LastIndex()
				if last < first {
					continue
				}
				es, err := l.Entries(first, last+1, 8<<10)
				if errors.Is(err, ErrCompacted) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				for k, e := range es {
					if e.Index != first+uint64(k) || !bytes.Equal(e.Data, entryData(e.Index, 1)) {
						errc <- errors.New("reader saw a wrong entry")
						return
					}
				}
				if _, err := l.Term(last); err != nil && !errors.Is(err, ErrCompacted) {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}
