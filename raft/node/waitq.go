package node

// waiterQueue holds proposal waiters in increasing index order, which is
// the order a leader appends them in. It replaced a map keyed by index:
// registering and answering a waiter is an append and a pop instead of a
// map insert and delete, and the order makes "everything at or above a
// truncation point" a pop from the back.
//
// Invariant: q[head:] is sorted by index, strictly increasing.
type waiterQueue struct {
	q    []*proposal
	head int
}

// len is the number of waiters held.
func (wq *waiterQueue) len() int { return len(wq.q) - wq.head }

// push appends w. Waiters at w.index or above belong to entries this
// node's log no longer holds (a leader only appends at LastIndex()+1, so
// its log was truncated below them and it led again); they are removed and
// appended to replaced, which is returned.
func (wq *waiterQueue) push(w *proposal, replaced []*proposal) []*proposal {
	replaced = wq.dropFrom(w.index, replaced)
	wq.q = append(wq.q, w)
	return replaced
}

// dropFrom removes the waiters at index from or above, appending them to
// out.
func (wq *waiterQueue) dropFrom(from uint64, out []*proposal) []*proposal {
	n := len(wq.q)
	for n > wq.head && wq.q[n-1].index >= from {
		n--
	}
	out = append(out, wq.q[n:]...)
	clear(wq.q[n:])
	wq.q = wq.q[:n]
	wq.reset()
	return out
}

// popThrough removes the waiters at index last or below, in index order,
// appending them to out.
func (wq *waiterQueue) popThrough(last uint64, out []*proposal) []*proposal {
	i := wq.head
	for i < len(wq.q) && wq.q[i].index <= last {
		out = append(out, wq.q[i])
		wq.q[i] = nil
		i++
	}
	wq.head = i
	wq.reset()
	return out
}

// takeAll removes every waiter, appending them to out.
func (wq *waiterQueue) takeAll(out []*proposal) []*proposal {
	return wq.dropFrom(0, out)
}

// at returns the waiter at index, if any (tests).
func (wq *waiterQueue) at(index uint64) *proposal {
	for _, w := range wq.q[wq.head:] {
		if w.index == index {
			return w
		}
	}
	return nil
}

// reset reclaims the dead front once it is empty or more than half the
// slice, so memory stays proportional to the waiters held.
func (wq *waiterQueue) reset() {
	switch {
	case wq.head == len(wq.q):
		wq.q, wq.head = wq.q[:0], 0
	case wq.head > 64 && wq.head > len(wq.q)/2:
		n := copy(wq.q, wq.q[wq.head:])
		clear(wq.q[n:])
		wq.q, wq.head = wq.q[:n], 0
	}
}
