package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input constructors keep the hand-built histories readable.
func get(k string) KVInput         { return KVInput{Op: OpGet, Key: k} }
func put(k, v string) KVInput      { return KVInput{Op: OpPut, Key: k, Value: v} }
func cas(k, old, v string) KVInput { return KVInput{Op: OpCAS, Key: k, Expect: old, Value: v} }
func del(k string) KVInput         { return KVInput{Op: OpDelete, Key: k} }
func casAbsent(k, v string) KVInput {
	return KVInput{Op: OpCAS, Key: k, ExpectAbsent: true, Value: v}
}

// Output constructors.
var (
	ack     = KVOutput{}
	absent  = KVOutput{Found: false}
	swapped = KVOutput{Swapped: true}
	failed  = KVOutput{Swapped: false}
)

func found(v string) KVOutput { return KVOutput{Found: true, Value: v} }

// do records a complete operation that overlaps nothing else.
func do(h *History, client int, in KVInput, out KVOutput) {
	h.Return(h.Invoke(client, in), out)
}

// historyCase builds a history by calling into a History in order: since
// timestamps follow call order, the order of calls fixes which operations
// overlap.
type historyCase struct {
	name  string
	build func(h *History)
}

func TestKVModelAcceptsLinearizableHistories(t *testing.T) {
	for _, tc := range []historyCase{
		{"empty", func(h *History) {}},
		{"sequential put get cas", func(h *History) {
			do(h, 0, get("x"), absent)
			do(h, 0, put("x", "1"), ack)
			do(h, 1, get("x"), found("1"))
			do(h, 1, cas("x", "1", "2"), swapped)
			do(h, 0, cas("x", "1", "3"), failed)
			do(h, 0, get("x"), found("2"))
		}},
		{"expect-absent cas creates once", func(h *History) {
			do(h, 0, casAbsent("x", "a"), swapped)
			do(h, 1, casAbsent("x", "b"), failed)
			do(h, 1, get("x"), found("a"))
		}},
		{"read concurrent with a write may see either value", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			w := h.Invoke(0, put("x", "2"))
			r1 := h.Invoke(1, get("x"))
			r2 := h.Invoke(2, get("x"))
			h.Return(r1, found("2"))
			h.Return(r2, found("1")) // r2 linearized before the write, r1 after
			h.Return(w, ack)
			do(h, 1, get("x"), found("2"))
		}},
		{"concurrent cas racers, one wins", func(h *History) {
			a := h.Invoke(0, casAbsent("x", "a"))
			b := h.Invoke(1, casAbsent("x", "b"))
			h.Return(b, failed)
			h.Return(a, swapped)
			do(h, 2, get("x"), found("a"))
		}},
		{"delete then recreate", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, del("x"), ack)
			do(h, 1, get("x"), absent)
			do(h, 1, cas("x", "1", "2"), KVOutput{Observed: true})
			do(h, 1, casAbsent("x", "3"), swapped)
			do(h, 0, casAbsent("x", "4"), KVOutput{Observed: true, Value: "3"})
			do(h, 0, get("x"), found("3"))
		}},
		{"many keys, independent", func(h *History) {
			for i := range 20 {
				k := fmt.Sprintf("k%d", i%4)
				do(h, i%3, put(k, fmt.Sprint(i)), ack)
				do(h, (i+1)%3, get(k), found(fmt.Sprint(i)))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			tc.build(h)
			res, err := CheckOperations(h.Operations(), CheckConfig{VisualizationDir: t.TempDir()})
			if res != porcupine.Ok || err != nil {
				t.Fatalf("check = %v, %v; want Ok", res, err)
			}
		})
	}
}

func TestKVModelRejectsAnomalies(t *testing.T) {
	for _, tc := range []historyCase{
		{"stale read after a completed write", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, put("x", "2"), ack)
			do(h, 1, get("x"), found("1"))
		}},
		{"lost acknowledged write", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 1, get("x"), absent)
		}},
		{"two expect-absent cas both succeed", func(h *History) {
			a := h.Invoke(0, casAbsent("x", "a"))
			b := h.Invoke(1, casAbsent("x", "b"))
			h.Return(a, swapped)
			h.Return(b, swapped)
		}},
		{"cas fails although its condition held", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, cas("x", "1", "2"), failed)
		}},
		{"cas succeeds on a value that was overwritten", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, put("x", "2"), ack)
			do(h, 1, cas("x", "1", "3"), swapped)
		}},
		{"read sees a value after an acknowledged delete", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, del("x"), ack)
			do(h, 1, get("x"), found("1"))
		}},
		{"failed cas reports a value the key did not hold", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 0, put("x", "2"), ack)
			do(h, 1, cas("x", "9", "3"), KVOutput{Observed: true, Value: "1"})
		}},
		{"read of a value never written", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			do(h, 1, get("x"), found("zzz"))
		}},
		{"new value seen, then old value seen again", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			w := h.Invoke(0, put("x", "2"))
			do(h, 1, get("x"), found("2"))
			do(h, 2, get("x"), found("1")) // starts after the first read returned
			h.Return(w, ack)
		}},
		{"one bad key among many good ones", func(h *History) {
			for i := range 30 {
				k := fmt.Sprintf("k%d", i%5)
				do(h, i%3, put(k, fmt.Sprint(i)), ack)
				do(h, (i+1)%3, get(k), found(fmt.Sprint(i)))
			}
			do(h, 0, put("k3", "last"), ack)
			do(h, 1, get("k3"), found("28"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			tc.build(h)
			dir := t.TempDir()
			res, err := CheckOperations(h.Operations(), CheckConfig{VisualizationDir: dir, Seed: 77})
			if res != porcupine.Illegal || !errors.Is(err, ErrNotLinearizable) {
				t.Fatalf("check = %v, %v; want Illegal, ErrNotLinearizable", res, err)
			}
			path := VisualizationPath(err)
			if !strings.HasPrefix(path, dir) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "seed 77") {
				t.Fatalf("error %q should name the seed and a visualization under %s", err, dir)
			}
			html, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !strings.Contains(string(html), "<html") {
				t.Fatalf("visualization %s is not HTML", path)
			}
		})
	}
}

func TestKVModelIndeterminateOutcomes(t *testing.T) {
	for _, tc := range []struct {
		historyCase
		want porcupine.CheckResult
	}{
		{historyCase{"indeterminate put took effect", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, get("x"), found("1"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate put did not take effect", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, get("x"), absent)
		}}, porcupine.Ok},
		{historyCase{"indeterminate put took effect late", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, get("x"), absent)
			do(h, 1, get("x"), found("1"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate put cannot un-happen", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, get("x"), found("1"))
			do(h, 1, get("x"), absent)
		}}, porcupine.Illegal},
		{historyCase{"indeterminate put may land after an acknowledged one", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, put("x", "2"), ack)
			do(h, 2, get("x"), found("1"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate put does not excuse a lost acknowledged one", func(h *History) {
			h.Indeterminate(h.Invoke(0, put("x", "1")))
			do(h, 1, put("x", "2"), ack)
			do(h, 2, get("x"), absent)
		}}, porcupine.Illegal},
		{historyCase{"never-returned put counts as indeterminate", func(h *History) {
			h.Invoke(0, put("x", "1"))
			do(h, 1, get("x"), found("1"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate cas took effect", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			h.Indeterminate(h.Invoke(0, cas("x", "1", "2")))
			do(h, 1, get("x"), found("2"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate cas did not take effect", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			h.Indeterminate(h.Invoke(0, cas("x", "1", "2")))
			do(h, 1, get("x"), found("1"))
		}}, porcupine.Ok},
		{historyCase{"indeterminate cas cannot apply when its condition never held", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			h.Indeterminate(h.Invoke(0, cas("x", "9", "2")))
			do(h, 1, get("x"), found("2"))
		}}, porcupine.Illegal},
		{historyCase{"failed operations are left out", func(h *History) {
			h.Fail(h.Invoke(0, put("x", "1")))
			do(h, 1, get("x"), absent)
		}}, porcupine.Ok},
		{historyCase{"indeterminate delete may or may not apply", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			h.Indeterminate(h.Invoke(0, del("x")))
			do(h, 1, get("x"), found("1"))
			do(h, 1, get("x"), absent)
		}}, porcupine.Ok},
		{historyCase{"indeterminate read constrains nothing", func(h *History) {
			do(h, 0, put("x", "1"), ack)
			h.Indeterminate(h.Invoke(1, get("x")))
			do(h, 2, get("x"), found("1"))
		}}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory()
			tc.build(h)
			res, err := CheckOperations(h.Operations(), CheckConfig{VisualizationDir: t.TempDir()})
			if res != tc.want {
				t.Fatalf("check = %v, %v; want %v", res, err, tc.want)
			}
			if (err == nil) != (tc.want == porcupine.Ok) {
				t.Fatalf("err = %v with result %v", err, res)
			}
		})
	}
}

func TestHistoryOperationsShape(t *testing.T) {
	h := NewHistory()
	a := h.Invoke(3, put("x", "1"))
	h.Invoke(4, get("x")) // pending read: omitted
	b := h.Invoke(5, put("y", "1"))
	h.Return(a, ack)
	h.Indeterminate(b)
	ops := h.Operations()
	if len(ops) != 2 {
		t.Fatalf("got %d operations, want 2 (the pending read omitted): %+v", len(ops), ops)
	}
	if ops[0].ClientId != 3 || ops[0].Call >= ops[0].Return {
		t.Fatalf("returned op %+v: want client 3 and call < return", ops[0])
	}
	last := int64(0)
	for _, op := range ops {
		last = max(last, op.Call, op.Return)
	}
	if ops[1].Output != (KVOutput{Unknown: true}) || ops[1].Return != last || ops[1].Return <= ops[0].Return {
		t.Fatalf("indeterminate op %+v: want Unknown output and the latest return time", ops[1])
	}
}

func TestHistoryMisusePanics(t *testing.T) {
	expectPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		fn()
	}
	h := NewHistoryLimit(2)
	id := h.Invoke(0, put("x", "1"))
	h.Return(id, ack)
	expectPanic("double finish", func() { h.Indeterminate(id) })
	expectPanic("unknown id", func() { h.Return(7, ack) })
	expectPanic("Return with Unknown", func() { h.Return(h.Invoke(0, get("x")), KVOutput{Unknown: true}) })
	expectPanic("over the limit", func() { h.Invoke(0, get("x")) })
	expectPanic("bad op", func() { NewHistory().Invoke(0, KVInput{Key: "x"}) })
}

// TestHistoryConcurrentClients records many clients against a correct
// (mutex-protected) store, some of whose replies are lost: the recorder's
// timestamps must make the result check Ok.
func TestHistoryConcurrentClients(t *testing.T) {
	var store struct {
		sync.Mutex
		m map[string]string
	}
	store.m = make(map[string]string)
	apply := func(in KVInput) KVOutput {
		store.Lock()
		defer store.Unlock()
		cur, ok := store.m[in.Key]
		switch in.Op {
		case OpGet:
			return KVOutput{Found: ok, Value: cur}
		case OpPut:
			store.m[in.Key] = in.Value
			return ack
		default:
			cond := ok && cur == in.Expect
			if in.ExpectAbsent {
				cond = !ok
			}
			if cond {
				store.m[in.Key] = in.Value
			}
			return KVOutput{Swapped: cond}
		}
	}
	h := NewHistory()
	const clients, opsPerClient = 6, 150
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 9))
			id := c // a client continues under a fresh id after an unknown outcome
			for i := range opsPerClient {
				k := fmt.Sprintf("k%d", rng.IntN(3))
				v := fmt.Sprintf("c%d-%d", c, i)
				var in KVInput
				switch rng.IntN(4) {
				case 0, 1:
					in = get(k)
				case 2:
					in = put(k, v)
				default:
					in = cas(k, fmt.Sprintf("c%d-%d", rng.IntN(clients), rng.IntN(i+1)), v)
				}
				op := h.Invoke(id, in)
				switch rng.IntN(20) {
				case 0: // request lost before reaching the store
					h.Indeterminate(op)
					id += clients
				case 1: // applied, reply lost
					apply(in)
					h.Indeterminate(op)
					id += clients
				default:
					h.Return(op, apply(in))
				}
			}
		}()
	}
	wg.Wait()
	if h.Len() != clients*opsPerClient {
		t.Fatalf("recorded %d ops, want %d", h.Len(), clients*opsPerClient)
	}
	res, err := Check(h, time.Minute)
	if res != porcupine.Ok {
		t.Fatalf("a correct store failed the check: %v, %v", res, err)
	}
}

// TestKVModelEventPartition checks the event-form partitioner through
// porcupine.CheckEvents.
func TestKVModelEventPartition(t *testing.T) {
	ev := func(kind porcupine.EventKind, id int, v any) porcupine.Event {
		return porcupine.Event{Kind: kind, Id: id, Value: v, ClientId: id}
	}
	call, ret := porcupine.CallEvent, porcupine.ReturnEvent
	good := []porcupine.Event{
		ev(call, 0, put("x", "1")), ev(call, 1, put("y", "1")),
		ev(ret, 0, ack), ev(ret, 1, ack),
		ev(call, 2, get("x")), ev(ret, 2, found("1")),
		ev(call, 3, get("y")), ev(ret, 3, found("1")),
	}
	if !porcupine.CheckEvents(KVModel, good) {
		t.Fatal("linearizable event history rejected")
	}
	bad := append(append([]porcupine.Event(nil), good...),
		ev(call, 4, put("y", "2")), ev(ret, 4, ack),
		ev(call, 5, get("y")), ev(ret, 5, found("1")))
	if porcupine.CheckEvents(KVModel, bad) {
		t.Fatal("stale read on y accepted")
	}
}

// TestCheckWritesVisualizationToTempDir covers Check's default output.
func TestCheckWritesVisualizationToTempDir(t *testing.T) {
	h := NewHistory()
	do(h, 0, put("x", "1"), ack)
	do(h, 1, get("x"), absent)
	res, err := Check(h, 0)
	path := VisualizationPath(err)
	if path != "" {
		t.Cleanup(func() { _ = os.Remove(path) })
	}
	if res != porcupine.Illegal || path == "" {
		t.Fatalf("check = %v, %v; want Illegal with a visualization", res, err)
	}
	if _, serr := os.Stat(path); serr != nil {
		t.Fatal(serr)
	}
}

// TestCheckTimesOut builds a history whose refutation needs every subset
// of 16 concurrent writes (about 10 s on this machine) and gives the
// checker 10 ms.
func TestCheckTimesOut(t *testing.T) {
	h := NewHistory()
	var ids []int
	const writers = 16
	for i := range writers {
		ids = append(ids, h.Invoke(i, put("x", fmt.Sprint(i))))
	}
	r := h.Invoke(writers, get("x"))
	for _, id := range ids {
		h.Return(id, ack)
	}
	h.Return(r, found("never written"))
	res, err := CheckOperations(h.Operations(), CheckConfig{Timeout: 10 * time.Millisecond, Seed: 5})
	if res != porcupine.Unknown || !errors.Is(err, ErrCheckTimedOut) || errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("check = %v, %v; want Unknown, ErrCheckTimedOut", res, err)
	}
	if VisualizationPath(err) != "" {
		t.Fatalf("a timed-out check wrote a visualization: %v", err)
	}
}
