package wal

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

var (
	modelSeed  = flag.Uint64("wal.seed", 0, "run TestModel with this seed only")
	modelSeeds = flag.Int("wal.seeds", 16, "number of seeds TestModel runs")
)

// model is the deliberately simple log the real one is compared against.
type model struct {
	markerIndex, markerTerm uint64
	base                    []byte       // the marker's base
	ents                    []wire.Entry // markerIndex+1 ..
	hs                      wire.HardState
}

func (m *model) first() uint64 { return m.markerIndex + 1 }
func (m *model) last() uint64  { return m.markerIndex + uint64(len(m.ents)) }

func (m *model) append(es []wire.Entry) {
	m.ents = append(m.ents[:es[0].Index-m.first()], es...)
}

// TestModel drives random appends (with conflicts), hard states,
// truncations, compactions, resets and reopens, and compares the log with
// the model after every step and after every reopen.
func TestModel(t *testing.T) {
	seeds := []uint64{*modelSeed}
	if *modelSeed == 0 {
		seeds = nil
		for i := 0; i < *modelSeeds; i++ {
			seeds = append(seeds, uint64(i+1)*0x9e3779b97f4a7c15)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("rerun with: go test ./wal -run 'TestModel' -wal.seed %d", seed)
				}
			}()
			runModel(t, seed, 300)
		})
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	dir := testDir
	fsys := vfs.NewMem()
	o := Options{
		SegmentBytes: int64(minSegmentBytes + rng.IntN(12<<10)),
		CacheBytes:   []int64{-1, 700, 0}[rng.IntN(3)],
		FS:           fsys,
		Logger:       quietLogger,
	}
	l := mustOpen(t, dir, o)
	defer func() { l.Close() }()
	m := &model{}
	term := uint64(1)
	for step := 0; step < steps; step++ {
		var what string
		switch p := rng.IntN(100); {
		case p < 50: // a burst of async appends, sometimes conflicting, sometimes with a hard state
			var wg sync.WaitGroup
			errs := make([]error, 1+rng.IntN(3))
			for b := range errs {
				start := m.last() + 1
				if rng.IntN(5) == 0 && m.last() >= m.first() {
					start = m.first() + uint64(rng.IntN(int(m.last()-m.first()+2)))
					term++
				}
				es := make([]wire.Entry, 1+rng.IntN(6))
				for i := range es {
					d := make([]byte, rng.IntN(300))
					for j := range d {
						d[j] = byte(rng.Uint32())
					}
					es[i] = wire.Entry{Index: start + uint64(i), Term: term, Type: wire.EntryType(rng.IntN(3)), Data: d}
				}
				var hs *wire.HardState
				if rng.IntN(3) == 0 {
					hs = &wire.HardState{Term: term, Vote: rng.Uint64N(4), Commit: rng.Uint64N(start + 1)}
					m.hs = *hs
				}
				m.append(es)
				what += fmt.Sprintf("append %d..%d t%d; ", start, start+uint64(len(es))-1, term)
				wg.Add(1)
				l.AppendAsync(es, hs, func(err error) { errs[b] = err; wg.Done() })
				// The log copied the data: scribbling on ours must not matter.
				for i := range es {
					m.ents[es[i].Index-m.first()].Data = bytes.Clone(es[i].Data)
					clear(es[i].Data)
				}
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("step %d %s: %v", step, what, err)
				}
			}
		case p < 58:
			m.hs = wire.HardState{Term: term, Vote: rng.Uint64N(4), Commit: rng.Uint64N(m.last() + 1)}
			hs := m.hs
			what = "hard state"
			if err := l.Append(nil, &hs); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
		case p < 68:
			from := m.first() + uint64(rng.IntN(int(m.last()-m.first()+3)))
			what = fmt.Sprintf("truncate from %d", from)
			if err := l.TruncateSuffix(from); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			if from <= m.last() {
				m.ents = m.ents[:from-m.first()]
			}
		case p < 80:
			upTo := m.markerIndex + uint64(rng.IntN(int(m.last()-m.markerIndex+1)))
			what = fmt.Sprintf("compact to %d", upTo)
			if rng.IntN(4) == 0 {
				upTo = m.last()
			}
			base := randomBase(rng)
			if err := l.CompactPrefix(upTo, base); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			compacted := upTo > m.markerIndex
			if compacted {
				m.base = bytes.Clone(base)
				m.markerTerm = m.ents[upTo-m.first()].Term
				m.ents = m.ents[upTo-m.markerIndex:]
				m.markerIndex = upTo
			}
			if compacted && upTo == m.last() {
				if segs := segmentPaths(t, fsys, dir); len(segs) != 1 {
					t.Fatalf("step %d %s: %d segment files after compacting everything, want 1", step, what, len(segs))
				}
			}
		case p < 84:
			idx := m.last() + uint64(rng.IntN(20))
			term++
			what = fmt.Sprintf("reset to %d t%d", idx, term)
			base := randomBase(rng)
			if err := l.Reset(idx, term, base); err != nil {
				t.Fatalf("step %d %s: %v", step, what, err)
			}
			m.markerIndex, m.markerTerm, m.ents, m.base = idx, term, nil, bytes.Clone(base)
			clear(base) // the log copied it
		default:
			what = "reopen"
			if err := l.Close(); err != nil {
				t.Fatalf("step %d close: %v", step, err)
			}
			var err error
			if l, err = Open(dir, o); err != nil {
				t.Fatalf("step %d reopen: %v", step, err)
			}
			// Recovery clamps a commit beyond the log (this workload, unlike
			// Raft, truncates and resets below it).
			m.hs.Commit = min(m.hs.Commit, m.last())
		}
		compareModel(t, l, m, rng, fmt.Sprintf("step %d (%s)", step, what))
	}
}

// randomBase is a base for a compaction or reset: none, a few bytes, or
// (rarely) more than a small segment holds, so that preambles outgrow it.
func randomBase(rng *rand.Rand) []byte {
	var n int
	switch p := rng.IntN(10); {
	case p < 3:
		return nil
	case p < 9:
		n = 1 + rng.IntN(200)
	default:
		n = 5<<10 + rng.IntN(20<<10)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// compareModel checks every observable of l (the log's group 0, or any
// group's view) against m.
func compareModel(t *testing.T, l View, m *model, rng *rand.Rand, where string) {
	t.Helper()
	if b := l.Base(); !bytes.Equal(b, m.base) || (b == nil) != (len(m.base) == 0) {
		t.Fatalf("%s: base of %d bytes, model %d bytes", where, len(b), len(m.base))
	}
	if l.FirstIndex() != m.first() || l.LastIndex() != m.last() {
		t.Fatalf("%s: first/last %d/%d, model %d/%d", where, l.FirstIndex(), l.LastIndex(), m.first(), m.last())
	}
	if hs := l.HardState(); hs != m.hs {
		t.Fatalf("%s: hard state %+v, model %+v", where, hs, m.hs)
	}
	if tm, err := l.Term(m.markerIndex); err != nil || tm != m.markerTerm {
		t.Fatalf("%s: marker term %d %v, model %d", where, tm, err, m.markerTerm)
	}
	if m.markerIndex > 0 {
		if _, err := l.Term(m.markerIndex - 1); !errors.Is(err, ErrCompacted) {
			t.Fatalf("%s: Term below marker: %v", where, err)
		}
	}
	if _, err := l.Term(m.last() + 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: Term above last: %v", where, err)
	}
	got, err := l.Entries(m.first(), m.last()+1, 1<<62)
	if err != nil {
		t.Fatalf("%s: Entries: %v", where, err)
	}
	if len(got) != len(m.ents) {
		t.Fatalf("%s: %d entries, model %d", where, len(got), len(m.ents))
	}
	for i, w := range m.ents {
		g := got[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("%s: entry %d differs: got (%d,%d,%d,%d bytes) model (%d,%d,%d,%d bytes)", where, w.Index,
				g.Index, g.Term, g.Type, len(g.Data), w.Index, w.Term, w.Type, len(w.Data))
		}
		if tm, _ := l.Term(w.Index); tm != w.Term {
			t.Fatalf("%s: Term(%d) = %d, model %d", where, w.Index, tm, w.Term)
		}
	}
	// A random window with a byte budget.
	if len(m.ents) > 0 {
		lo := m.first() + uint64(rng.IntN(len(m.ents)))
		hi := lo + 1 + uint64(rng.IntN(int(m.last()-lo+1)))
		budget := uint64(rng.IntN(1000))
		got, err := l.Entries(lo, hi, budget)
		if err != nil || len(got) == 0 {
			t.Fatalf("%s: Entries(%d,%d,%d) = %d entries, %v", where, lo, hi, budget, len(got), err)
		}
		var sum uint64
		for i, g := range got {
			sum += uint64(len(g.Data))
			if g.Index != lo+uint64(i) {
				t.Fatalf("%s: window entry %d has index %d", where, i, g.Index)
			}
		}
		if len(got) > 1 && sum > budget {
			t.Fatalf("%s: window of %d bytes exceeds budget %d", where, sum, budget)
		}
		if next := lo + uint64(len(got)); next < hi && sum+uint64(len(m.ents[next-m.first()].Data)) <= budget {
			t.Fatalf("%s: window stopped early at %d (sum %d, budget %d)", where, next, sum, budget)
		}
	}
}
