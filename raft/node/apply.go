package node

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/raftpipe/raftpipe/raft/sm"
	"github.com/raftpipe/raftpipe/wire"
)

// maxApplyTasks bounds the queue between the loop and the apply goroutine.
// When it is full the loop waits, which slows the intake of new work: the
// backpressure that keeps a slow state machine from growing memory.
const maxApplyTasks = 1024

// proposal is one client write waiting for its entry to apply.
type proposal struct {
	// data is the encoded command (the entry's Data).
	data []byte
	// index and term identify the entry once proposed (set by the loop).
	index, term uint64
	// cb receives the outcome exactly once; it runs on the apply or loop
	// goroutine and must not block.
	cb func(proposalResult)
	// done guards cb against a second call.
	done atomic.Bool
	// sample is non-nil for a write whose stages are timed (stages.go).
	sample *stageSample
}

// proposalResult is what a write's caller learns.
type proposalResult struct {
	// status is the wire status to answer with.
	status wire.Status
	// value is the current value on StatusCASFailed.
	value []byte
	// index is the log index the write applied at.
	index uint64
	// leaderHint is the leader's client address on StatusNotLeader.
	leaderHint string
	// err explains StatusError.
	err error
}

// finish delivers r once and releases the pending slot.
func (p *proposal) finish(r proposalResult) {
	if p.done.CompareAndSwap(false, true) {
		p.cb(r)
	}
}

// readReq is one linearizable get.
type readReq struct {
	// key is read once the state machine has applied the read index.
	key []byte
	// cb receives the outcome exactly once; it must not block.
	cb func(readResult)
	// done guards cb.
	done atomic.Bool
}

// readResult is what a read's caller learns.
type readResult struct {
	status     wire.Status
	value      []byte
	index      uint64
	leaderHint string
	err        error
}

func (r *readReq) finish(res readResult) {
	if r.done.CompareAndSwap(false, true) {
		r.cb(res)
	}
}

// applyTask is one unit of work for the apply goroutine: committed entries
// to apply, reads to serve at an index, or a barrier to close once
// everything before it is applied.
type applyTask struct {
	entries []wire.Entry
	// members, if not nil, is the encoded membership after the conf
	// change at index membersAt among entries.
	members   []byte
	membersAt uint64
	readIndex uint64
	reads     []*readReq
	barrier   chan struct{}
	// sampled: entries holds a write whose stages are timed.
	sampled bool
}

// applier applies committed entries to the state machine on its own
// goroutine and answers the writes and reads that wait on them.
type applier struct {
	rep   *replica
	tasks chan applyTask
	// pending counts writes accepted and not yet answered (for Busy).
	pending atomic.Int64
	mu      struct {
		sync.Mutex
		// waiters holds the proposals expected at log indexes, in index
		// order.
		waiters waiterQueue
		// failed is set by failAll: later registrations fail at once.
		failed error
	}
	// Owned by the apply goroutine:
	// found is scratch space for the waiters one batch answers.
	found        []*proposal
	reads        []pendingRead
	results      []sm.Result
	applied      uint64
	sinceCompact uint64
	// flushing is set while a state-machine flush started by startFlush is
	// in progress; cleared by its watcher goroutine.
	flushing atomic.Bool
}

// pendingRead is a batch of reads waiting for apply to reach index.
type pendingRead struct {
	index uint64
	reads []*readReq
}

func newApplier(rep *replica) *applier {
	a := &applier{rep: rep, tasks: make(chan applyTask, perGroup(maxApplyTasks, rep.cfg.Groups, minGroupApplyTasks)), applied: rep.sm.AppliedIndex()}
	return a
}

// register records proposals that the core appended. A waiter already
// registered at the same index belongs to an entry of an earlier term that
// this node's log no longer holds (it was truncated, then this node led
// again); it is answered unknown rather than left to hang (see dropFrom).
func (a *applier) register(ws []*proposal) {
	var replaced []*proposal
	a.mu.Lock()
	failed := a.mu.failed
	if failed == nil {
		for _, w := range ws {
			replaced = a.mu.waiters.push(w, replaced)
		}
	}
	a.mu.Unlock()
	for _, w := range replaced {
		w.finish(proposalResult{status: wire.StatusUnknown, err: errEntryLeftLog})
	}
	if failed != nil {
		for _, w := range ws {
			w.finish(proposalResult{status: wire.StatusUnknown, err: failed})
		}
	}
}

// errEntryLeftLog explains an unknown outcome: the proposal's entry is no
// longer in this node's log, so this node cannot learn whether it commits.
var errEntryLeftLog = errors.New("node: the proposal's entry left this node's log (truncated or replaced by a snapshot); it may still commit elsewhere")

// dropFrom answers every waiter at an index >= from: the log is being
// truncated there, so their entries leave this node's log, and this node
// will never apply them to learn the outcome. They are answered unknown,
// not not-leader: an entry truncated here can still commit through another
// node that holds it (in a 5-node cluster, a node with the old tail can win
// an election with the votes of two nodes that never saw the newer term),
// so a retry could apply the write twice.
func (a *applier) dropFrom(from uint64) {
	a.mu.Lock()
	dropped := a.mu.waiters.dropFrom(from, nil)
	a.mu.Unlock()
	for _, w := range dropped {
		w.finish(proposalResult{status: wire.StatusUnknown, err: errEntryLeftLog})
	}
}

// dropForSnapshot answers every waiter once a snapshot at (index, term)
// replaced the whole log. A waiter at or below index whose term is above
// the snapshot's term can never commit (every entry up to index has a term
// at most term, and those entries are committed): not-leader, safe to
// retry. Every other waiter's outcome is unknown here: its entry may be
// the one the snapshot covers, or (above index) may still commit elsewhere.
func (a *applier) dropForSnapshot(index, term uint64) {
	a.mu.Lock()
	ws := a.mu.waiters.takeAll(nil)
	a.mu.Unlock()
	for _, w := range ws {
		if w.index <= index && w.term > term {
			w.finish(proposalResult{status: wire.StatusNotLeader, leaderHint: a.rep.leaderHint()})
			continue
		}
		w.finish(proposalResult{status: wire.StatusUnknown, err: errEntryLeftLog})
	}
}

// enqueue hands a task to the apply goroutine, waiting while its queue is
// full (backpressure) unless the node stops.
func (a *applier) enqueue(t applyTask) {
	select {
	case a.tasks <- t:
	case <-a.rep.stopc:
	}
}

// barrier waits until every task queued before it has been applied.
func (a *applier) barrier() bool {
	ch := make(chan struct{})
	a.enqueue(applyTask{barrier: ch})
	select {
	case <-ch:
		return true
	case <-a.rep.stopc:
		return false
	}
}

// run is the apply goroutine.
func (a *applier) run() {
	defer a.rep.wg.Done()
	for {
		select {
		case <-a.rep.stopc:
			return
		case t := <-a.tasks:
			switch {
			case t.barrier != nil:
				a.applied = a.rep.sm.AppliedIndex()
				close(t.barrier)
			case len(t.entries) > 0:
				if t.members != nil {
					// Before the batch applies, so that any checkpoint
					// covering the change finds it (memberHistory).
					a.rep.memberHist.record(t.membersAt, t.members)
				}
				if err := a.apply(t.entries, t.sampled); err != nil {
					a.rep.failFatal(err)
					return
				}
			}
			if len(t.reads) > 0 {
				a.reads = append(a.reads, pendingRead{index: t.readIndex, reads: t.reads})
			}
			a.serveReads()
		}
	}
}

// apply applies one batch to the state machine (one Pebble batch, for kv)
// and answers its writers; sampled says the batch holds a timed write.
func (a *applier) apply(ents []wire.Entry, sampled bool) error {
	defer a.rep.metrics.observeApply(monoNanos())
	if cap(a.results) < len(ents) {
		a.results = make([]sm.Result, len(ents))
	}
	results := a.results[:len(ents)]
	if err := a.rep.sm.Apply(ents, results); err != nil {
		return err
	}
	var appliedAt int64
	if sampled {
		appliedAt = a.rep.stages.now()
	}
	last := ents[len(ents)-1].Index
	if last > a.applied {
		a.applied = last
	}
	a.rep.metrics.applied.Add(uint64(len(ents)))
	if a.rep.group == 0 {
		a.rep.metrics.observeApplied(ents) // the sampler times group 0's batches
	}

	a.mu.Lock()
	found := a.mu.waiters.popThrough(last, a.found[:0])
	a.mu.Unlock()
	first := ents[0].Index
	for j, w := range found {
		found[j] = nil
		if w.index < first {
			// Registered for an index this node had already applied:
			// its entry cannot be told apart from the one applied
			// there. Cannot happen on a leader, which proposes above
			// everything committed; answered rather than dropped.
			w.finish(proposalResult{status: wire.StatusUnknown, err: errEntryLeftLog})
			continue
		}
		e, r := &ents[w.index-first], &results[w.index-first]
		if e.Term != w.term {
			// Another leader's entry took this index: ours was
			// overwritten and can never commit. Safe to retry.
			a.rep.metrics.proposalFailed(failOverwritten, 1)
			w.finish(proposalResult{status: wire.StatusNotLeader, leaderHint: a.rep.leaderHint()})
			continue
		}
		w.finish(proposalResult{status: r.Status, value: r.Value, index: e.Index})
		if sampled && w.sample != nil {
			a.rep.stages.replied(w.sample, appliedAt)
		}
	}
	a.found = found[:0]
	clear(results)

	a.sinceCompact += uint64(len(ents))
	if a.sinceCompact >= a.rep.cfg.SnapshotEntries && !a.flushing.Load() {
		a.sinceCompact = 0
		return a.startFlush()
	}
	return nil
}

// startFlush makes the state machine durable up to the applied index
// without waiting: applying goes on while the memtable is written out, and
// the log is compacted only once the flush is done (compaction must never
// pass what the state machine holds durably). Applying used to wait for
// the flush; with 64 MiB memtables that held every write applied behind
// it for up to 640 ms (commit_to_applied max in raftbench's stage
// breakdown on a busy disk). One flush at a time.
func (a *applier) startFlush() error {
	flushed, done, err := a.rep.sm.FlushAsync()
	if err != nil {
		return err
	}
	a.flushing.Store(true)
	a.rep.wg.Add(1)
	go func() {
		defer a.rep.wg.Done()
		select {
		case <-done:
		case <-a.rep.stopc:
			return
		}
		a.flushing.Store(false)
		a.rep.submitEventAsync(func() { a.rep.compact(flushed) })
	}()
	return nil
}

// serveReads answers reads whose index has been applied.
func (a *applier) serveReads() {
	k := 0
	for _, pr := range a.reads {
		if pr.index > a.applied {
			a.reads[k] = pr
			k++
			continue
		}
		for _, r := range pr.reads {
			v, ok, err := a.rep.sm.Lookup(r.key)
			switch {
			case err != nil:
				r.finish(readResult{status: wire.StatusError, err: err})
			case !ok:
				r.finish(readResult{status: wire.StatusNotFound, index: pr.index})
			default:
				r.finish(readResult{status: wire.StatusOK, value: v, index: pr.index})
			}
		}
	}
	clear(a.reads[k:])
	a.reads = a.reads[:k]
}

// failAll answers every waiting write and read with err; called once the
// goroutines have stopped. Writes get StatusUnknown: they may have
// committed.
func (a *applier) failAll(err error) {
	a.mu.Lock()
	ws := a.mu.waiters.takeAll(nil)
	a.mu.failed = err
	a.mu.Unlock()
	a.rep.metrics.proposalFailed(failStopped, len(ws))
	for _, w := range ws {
		w.finish(proposalResult{status: wire.StatusUnknown, err: err})
	}
	for _, pr := range a.reads {
		for _, r := range pr.reads {
			r.finish(readResult{status: wire.StatusError, err: err})
		}
	}
	a.reads = nil
	for {
		select {
		case t := <-a.tasks:
			for _, r := range t.reads {
				r.finish(readResult{status: wire.StatusError, err: err})
			}
		default:
			return
		}
	}
}

// reloadApplied makes the apply goroutine re-read the state machine's
// applied index (after a snapshot restore replaced it); a barrier task does
// that when it runs.
func (a *applier) reloadApplied() {
	a.enqueue(applyTask{barrier: make(chan struct{})})
}
