package wire

import (
	"bytes"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: the pooled
// zstd coders must run on the caller's goroutine and start none of their own.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConcurrentCompression exercises the pooled zstd coders and S2 from
// several goroutines at once (run with -race).
func TestConcurrentCompression(t *testing.T) {
	const goroutines, rounds = 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				c := []Compression{CompressionS2, CompressionZstd}[(g+i)%2]
				o := DefaultOptions()
				o.Compression = c
				o.CompressThresholdBytes = 0
				data := textish(2000+i*50, g)
				m := Message{Type: MsgApp, Entries: []Entry{{Term: 1, Index: uint64(i), Data: data}}}
				b, err := AppendMessage(nil, &m, &o)
				if err != nil {
					errs <- err
					return
				}
				f, _, err := ParseFrame(b, &o)
				if err != nil {
					errs <- err
					return
				}
				var got Message
				if err := DecodeMessage(f.Type, f.Payload, &got); err != nil {
					errs <- err
					return
				}
				if len(got.Entries) != 1 || !bytes.Equal(got.Entries[0].Data, data) {
					errs <- ErrCorrupt
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
