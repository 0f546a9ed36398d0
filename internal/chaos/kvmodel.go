package chaos

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// OpKind is the kind of a KV operation in a history.
type OpKind uint8

const (
	// OpGet is a linearizable read of one key.
	OpGet OpKind = iota + 1
	// OpPut writes Value to Key unconditionally.
	OpPut
	// OpCAS writes Value to Key if Key holds Expect (or, with
	// ExpectAbsent, if Key is absent).
	OpCAS
	// OpDelete removes Key; it succeeds whether or not Key exists.
	OpDelete
)

// String names the kind for visualizations and failure messages.
func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpCAS:
		return "cas"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// KVInput is what a client asked for. It is a plain comparable value so
// the checker can copy it freely.
type KVInput struct {
	// Op selects the operation.
	Op OpKind
	// Key is the key operated on; histories are partitioned by it.
	Key string
	// Value is the value written by OpPut and by a successful OpCAS.
	// Tests should write unique values so a stale read is unambiguous.
	Value string
	// Expect is the value OpCAS requires, unless ExpectAbsent.
	Expect string
	// ExpectAbsent makes OpCAS succeed only if Key does not exist
	// (create-if-absent); Expect is then ignored.
	ExpectAbsent bool
}

// KVOutput is what the client observed.
type KVOutput struct {
	// Value is what OpGet read (meaningful only when Found).
	Value string
	// Found reports whether OpGet found the key.
	Found bool
	// Swapped reports whether OpCAS applied its write.
	Swapped bool
	// Observed says a failed OpCAS reported the key's current value in
	// Value ("" if absent: the wire does not tell an absent key from an
	// empty value), so the checker verifies that value too. Without it a
	// failed CAS only asserts that its condition did not hold.
	Observed bool
	// Unknown marks an operation whose outcome the client never learned
	// (timeout, lost connection). Set by History.Indeterminate; it matches
	// every outcome.
	Unknown bool
}

// kvState is the state of one key: the model runs per partition, so the
// state of the whole store is never materialised. Comparable, so
// porcupine's default == equality works.
type kvState struct {
	// value is the key's current value.
	// Invariant: value is "" when !present, so == is state equality and a
	// failed CAS's reported value compares directly.
	value string
	// present is false until the key's first write.
	present bool
}

// KVModel is the porcupine model of raftpipe's KV state machine: get,
// put, delete and compare-and-swap on string keys, partitioned by key so each key
// is checked on its own (a history is linearizable iff every key's
// sub-history is, because operations touch one key each).
var KVModel = porcupine.Model{
	Partition:         partitionOps,
	PartitionEvent:    partitionEvents,
	Init:              func() any { return kvState{} },
	Step:              kvStep,
	Hash:              kvHash,
	DescribeOperation: describeOp,
	DescribeState:     describeState,
}

// kvStep is the sequential specification of one key.
//
// An operation with an Unknown output is accepted whatever the state, and
// applies its effect when its condition holds. "It did not take effect"
// needs no case of its own: History gives such an operation a return time
// after every other event, so porcupine may linearize it last, where its
// effect is invisible.
func kvStep(state, input, output any) (bool, any) {
	s := state.(kvState)
	in := input.(KVInput)
	out := output.(KVOutput)
	switch in.Op {
	case OpGet:
		if out.Unknown {
			return true, s
		}
		if out.Found != s.present {
			return false, s
		}
		return !s.present || out.Value == s.value, s
	case OpPut:
		return true, kvState{value: in.Value, present: true}
	case OpDelete:
		return true, kvState{}
	case OpCAS:
		cond := s.present && s.value == in.Expect
		if in.ExpectAbsent {
			cond = !s.present
		}
		if out.Unknown {
			if cond {
				return true, kvState{value: in.Value, present: true}
			}
			return true, s
		}
		if out.Swapped != cond {
			return false, s
		}
		if cond {
			return true, kvState{value: in.Value, present: true}
		}
		// Failed as it should; check the value it reported, if any.
		return !out.Observed || out.Value == s.value, s
	}
	panic(fmt.Sprintf("chaos: invariant violated: unknown OpKind %d in history", in.Op))
}

// kvHash lets the checker's cache skip most equality comparisons.
func kvHash(state any) uint64 {
	s := state.(kvState)
	h := fnv.New64a()
	_, _ = h.Write([]byte(s.value))
	if s.present {
		_, _ = h.Write([]byte{1})
	}
	return h.Sum64()
}

// partitionOps splits a history by key, keeping each key's order.
func partitionOps(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string]int)
	var out [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(KVInput).Key
		i, ok := byKey[k]
		if !ok {
			i = len(out)
			byKey[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], op)
	}
	return out
}

// partitionEvents splits an event history by key; a return event belongs
// to the key of the call with the same Id.
func partitionEvents(history []porcupine.Event) [][]porcupine.Event {
	keyOf := make(map[int]string)
	byKey := make(map[string]int)
	var out [][]porcupine.Event
	for _, ev := range history {
		var k string
		if ev.Kind == porcupine.CallEvent {
			k = ev.Value.(KVInput).Key
			keyOf[ev.Id] = k
		} else {
			var ok bool
			if k, ok = keyOf[ev.Id]; !ok {
				panic(fmt.Sprintf("chaos: invariant violated: return event %d before its call", ev.Id))
			}
		}
		i, ok := byKey[k]
		if !ok {
			i = len(out)
			byKey[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], ev)
	}
	return out
}

// describeOp renders one operation in the HTML visualization.
func describeOp(input, output any) string {
	in := input.(KVInput)
	out := output.(KVOutput)
	var res string
	switch in.Op {
	case OpGet:
		switch {
		case out.Unknown:
			res = "?"
		case out.Found:
			res = fmt.Sprintf("%q", out.Value)
		default:
			res = "<absent>"
		}
		return fmt.Sprintf("get(%q) -> %s", in.Key, res)
	case OpPut:
		res = "ok"
		if out.Unknown {
			res = "?"
		}
		return fmt.Sprintf("put(%q, %q) -> %s", in.Key, in.Value, res)
	case OpDelete:
		res = "ok"
		if out.Unknown {
			res = "?"
		}
		return fmt.Sprintf("delete(%q) -> %s", in.Key, res)
	case OpCAS:
		expect := fmt.Sprintf("%q", in.Expect)
		if in.ExpectAbsent {
			expect = "<absent>"
		}
		switch {
		case out.Unknown:
			res = "?"
		case out.Swapped:
			res = "swapped"
		case out.Observed:
			res = fmt.Sprintf("failed, found %q", out.Value)
		default:
			res = "failed"
		}
		return fmt.Sprintf("cas(%q, %s -> %q) -> %s", in.Key, expect, in.Value, res)
	}
	return fmt.Sprintf("%v -> %v", in, out)
}

// describeState renders one key's state in the visualization.
func describeState(state any) string {
	s := state.(kvState)
	if !s.present {
		return "<absent>"
	}
	return fmt.Sprintf("%q", s.value)
}
