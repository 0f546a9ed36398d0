package kv

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

var modelSeed = flag.Uint64("kv.seed", 0, "seed for TestApplyMatchesModel (0: time-based)")

// TestApplyMatchesModel compares Apply (batched, with the written-key filter
// and the backward scan for CAS) against a deliberately simple sequential
// map, over random batches of puts, deletes, CAS and gets on a few keys so
// that reads of keys written earlier in the same batch are common. Rerun a
// failure with -kv.seed.
func TestApplyMatchesModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -kv.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := openT(t, t.TempDir(), Options{DisableWAL: true})
	defer s.Close()

	m := map[string][]byte{}
	keys := []string{"a", "b", "c", "d", "", "long-key-with-some-bytes"}
	vals := [][]byte{nil, []byte("x"), []byte("y"), []byte("zz")}
	next := uint64(1)
	for round := 0; round < 300; round++ {
		n := 1 + rng.IntN(40)
		es := make([]wire.Entry, n)
		want := make([]Result, n)
		for i := range es {
			k := keys[rng.IntN(len(keys))]
			v := vals[rng.IntN(len(vals))]
			cur, present := m[k]
			var req wire.ClientRequest
			switch p := rng.IntN(10); {
			case p < 3:
				req = wire.ClientRequest{Op: wire.OpPut, Key: []byte(k), Value: v}
				m[k] = v
			case p < 5:
				req = wire.ClientRequest{Op: wire.OpDelete, Key: []byte(k)}
				delete(m, k)
			case p < 9:
				req = wire.ClientRequest{Op: wire.OpCAS, Key: []byte(k), Value: v}
				switch rng.IntN(3) {
				case 0:
					req.Flags = wire.FlagExpectAbsent
				case 1:
					req.Expect = cur // usually the current value
				default:
					req.Expect = vals[rng.IntN(len(vals))]
				}
				ok := (req.Flags != 0 && !present) || (req.Flags == 0 && present && bytes.Equal(cur, req.Expect))
				if ok {
					m[k] = v
				} else {
					want[i] = Result{Status: wire.StatusCASFailed, Value: cur}
					if present && cur == nil {
						want[i].Value = []byte{}
					}
				}
			default:
				req = wire.ClientRequest{Op: wire.OpGet, Key: []byte(k)}
				if present {
					want[i].Value = append([]byte{}, cur...)
				} else {
					want[i].Status = wire.StatusNotFound
				}
			}
			es[i] = wire.Entry{Index: next, Type: wire.EntryNormal, Data: EncodeCommand(nil, &req)}
			next++
		}
		got := apply(t, s, es)
		for i := range want {
			if got[i].Status != want[i].Status || !bytes.Equal(got[i].Value, want[i].Value) ||
				(got[i].Value == nil) != (want[i].Value == nil) {
				var req wire.ClientRequest
				_ = DecodeCommand(es[i].Data, &req)
				t.Fatalf("seed %d round %d entry %d (%+v): got %+v, want %+v", seed, round, i, req, got[i], want[i])
			}
		}
		if round%50 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	final := model{}
	for k, v := range m {
		final[k] = string(v)
	}
	checkModel(t, s, final)
	if s.AppliedIndex() != next-1 {
		t.Fatalf("AppliedIndex %d, want %d", s.AppliedIndex(), next-1)
	}
}
