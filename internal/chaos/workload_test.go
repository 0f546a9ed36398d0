package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/raft/client"
)

// Workload shape.
const (
	// workloadKeys is the number of keys the clients share: few keys, so
	// that operations on one key overlap and stale reads would show.
	workloadKeys = 5
	// workloadWorkers is the number of concurrent logical clients.
	workloadWorkers = 6
	// workloadClients is the number of client.Client instances the
	// workers share (each pipelines many requests on one connection per
	// node).
	workloadClients = 2
	// opTimeout bounds one operation: long enough to ride out one election,
	// short enough that a write stuck on a deposed leader ends (as
	// indeterminate) and its worker continues.
	opTimeout = 2 * time.Second
	// clientRequestTimeout bounds one attempt inside a call.
	clientRequestTimeout = time.Second
	// maxThinkTime is the most a worker pauses between operations. It
	// paces the load (the machine is shared, and the checker's cost grows
	// with the history), and is not a wait for anything.
	maxThinkTime = 2 * time.Millisecond
	// historyOpsPerSec sizes a run's History: well above the rates seen
	// on this machine (about 1,200 operations/s at most), so that a long
	// run is not cut short; workers stop early rather than overflow it.
	historyOpsPerSec = 3000
	// historyHeadroomOps is kept free in the History for final reads and
	// for the operations in flight when workers notice it is full.
	historyHeadroomOps = 1000
)

// historyLimit is the History bound for a schedule of fault time d (plus
// setup and convergence).
func historyLimit(d time.Duration) int {
	return max(DefaultMaxHistoryOps, int((d+2*time.Minute).Seconds()*historyOpsPerSec))
}

// workloadStats counts what the workers did; all fields are atomics
// shared by the workers.
type workloadStats struct {
	// ops counts invoked operations; returned, failed and indeterminate
	// count their outcomes (failed: certainly no effect).
	ops, returned, failed, indeterminate atomic.Int64
	// gets, puts, cases count invocations by kind.
	gets, puts, cases atomic.Int64
	// casSwapped counts compare-and-swaps that applied.
	casSwapped atomic.Int64
}

// String is the one-line summary printed per schedule.
func (s *workloadStats) String() string {
	return fmt.Sprintf("ops=%d (get %d, put %d, cas %d of which %d swapped) ok=%d no-effect=%d indeterminate=%d",
		s.ops.Load(), s.gets.Load(), s.puts.Load(), s.cases.Load(), s.casSwapped.Load(),
		s.returned.Load(), s.failed.Load(), s.indeterminate.Load())
}

// workload runs concurrent clients doing linearizable get, put and CAS on
// a few keys through raft/client, recording every operation in a History.
type workload struct {
	// h is the run's history.
	h *History
	// clients are shared by the workers; closed by stop.
	clients []*client.Client
	// nextClientID hands out porcupine client IDs: a worker takes a fresh
	// one after every indeterminate operation.
	nextClientID atomic.Int64
	// limit is h's bound; workers stop historyHeadroomOps short of it.
	limit int
	// full is set when workers stopped because the history filled up.
	full atomic.Bool
	// stats are the running counts.
	stats workloadStats
	// cancel ends the workers; wg waits for them.
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// errMu guards errs: unexpected errors (protocol violations, bad
	// requests) that fail the test after the run.
	errMu sync.Mutex
	errs  []error
}

// workloadKey names key i.
func workloadKey(i int) string { return fmt.Sprintf("k%d", i) }

// newChaosClient makes a client for the cluster's client ports.
func newChaosClient(t testing.TB, addrs []string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Addrs: addrs, ClusterID: chaosClusterID, RequestTimeout: clientRequestTimeout})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return cl
}

// startWorkload starts the workers. addrs are the nodes' client
// addresses; each client gets them in a different rotation so that the
// clients start on different nodes.
func startWorkload(t testing.TB, addrs []string, seed uint64) *workload {
	limit := historyLimit(scheduleDuration())
	w := &workload{h: NewHistoryLimit(limit), limit: limit}
	for i := 0; i < workloadClients; i++ {
		rot := append(append([]string(nil), addrs[i%len(addrs):]...), addrs[:i%len(addrs)]...)
		w.clients = append(w.clients, newChaosClient(t, rot))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for i := 0; i < workloadWorkers; i++ {
		w.wg.Add(1)
		go w.worker(ctx, i, rand.New(rand.NewPCG(seed, uint64(i)+1)))
	}
	return w
}

// stop ends the workers and closes the clients. Safe to call twice.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
	for _, cl := range w.clients {
		cl.Close()
	}
	w.clients = nil
}

// fail records an unexpected error for the test to report.
func (w *workload) fail(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if len(w.errs) < 10 {
		w.errs = append(w.errs, err)
	}
}

// err returns the unexpected errors seen, joined.
func (w *workload) err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return errors.Join(w.errs...)
}

// worker is one logical client: it issues one operation at a time.
func (w *workload) worker(ctx context.Context, idx int, rng *rand.Rand) {
	defer w.wg.Done()
	cl := w.clients[idx%len(w.clients)]
	clientID := int(w.nextClientID.Add(1))
	// seen is the last value this worker knows for each key: CAS expects
	// it, so that some CAS operations succeed.
	seen := map[string]string{}
	for seq := 0; ctx.Err() == nil; seq++ {
		if w.h.Len() >= w.limit-historyHeadroomOps {
			w.full.Store(true)
			return
		}
		key := workloadKey(rng.IntN(workloadKeys))
		var in KVInput
		switch r := rng.IntN(100); {
		case r < 40:
			in = KVInput{Op: OpGet, Key: key}
		case r < 75:
			in = KVInput{Op: OpPut, Key: key, Value: fmt.Sprintf("w%d-%d", idx, seq)}
		default:
			in = KVInput{Op: OpCAS, Key: key, Value: fmt.Sprintf("w%d-%d", idx, seq)}
			if v, ok := seen[key]; ok {
				in.Expect = v
			} else {
				in.ExpectAbsent = true
			}
		}
		if w.do(ctx, cl, clientID, in, seen) {
			clientID = int(w.nextClientID.Add(1))
		}
		time.Sleep(time.Duration(rng.Int64N(int64(maxThinkTime))))
	}
}

// do runs one operation and records it; it reports whether the outcome
// was indeterminate (the worker then continues under a new client ID).
func (w *workload) do(ctx context.Context, cl *client.Client, clientID int, in KVInput, seen map[string]string) (indeterminate bool) {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	w.stats.ops.Add(1)
	id := w.h.Invoke(clientID, in)
	var out KVOutput
	var err error
	switch in.Op {
	case OpGet:
		w.stats.gets.Add(1)
		var v []byte
		v, out.Found, err = cl.Get(opCtx, []byte(in.Key))
		out.Value = string(v)
	case OpPut:
		w.stats.puts.Add(1)
		_, err = cl.Put(opCtx, []byte(in.Key), []byte(in.Value))
	case OpCAS:
		w.stats.cases.Add(1)
		var cur []byte
		out.Swapped, cur, err = cl.CAS(opCtx, []byte(in.Key), []byte(in.Expect), []byte(in.Value), in.ExpectAbsent)
		if err == nil && !out.Swapped {
			out.Observed, out.Value = true, string(cur)
		}
	}
	switch {
	case err == nil:
		w.h.Return(id, out)
		w.stats.returned.Add(1)
		switch {
		case in.Op == OpGet && out.Found, in.Op == OpCAS && out.Observed && out.Value != "":
			seen[in.Key] = out.Value
		case in.Op == OpGet, in.Op == OpCAS && out.Observed:
			delete(seen, in.Key) // absent: the next CAS expects absence
		case in.Op == OpPut, in.Op == OpCAS && out.Swapped:
			seen[in.Key] = in.Value
			if out.Swapped {
				w.stats.casSwapped.Add(1)
			}
		}
		return false
	case errors.Is(err, client.ErrBadRequest), errors.Is(err, client.ErrProtocol):
		w.h.Indeterminate(id)
		w.fail(fmt.Errorf("%v %q: %w", in.Op, in.Key, err))
		return true
	case in.Op != OpGet && !errors.Is(err, client.ErrUnknownOutcome) &&
		(errors.Is(err, client.ErrNotLeader) || errors.Is(err, client.ErrBusy) || errors.Is(err, client.ErrUnavailable)):
		// The client promises these were not applied.
		w.h.Fail(id)
		w.stats.failed.Add(1)
		return false
	default:
		// Timeouts, unknown outcomes, server errors, a cancelled context:
		// the write may have applied. A failed read constrains nothing
		// and History leaves it out either way.
		w.h.Indeterminate(id)
		w.stats.indeterminate.Add(1)
		delete(seen, in.Key)
		return true
	}
}

// finalReads reads every workload key through a fresh client and records
// the reads in the history (so the checker verifies them against all the
// writes), and returns what they read. Reads are retried until they get
// a definite answer (a failed read has no effect and is not recorded as
// a result).
func (w *workload) finalReads(t testing.TB, addrs []string) (map[string]*string, error) {
	cl := newChaosClient(t, addrs)
	defer cl.Close()
	res := map[string]*string{}
	deadline := time.Now().Add(convergeDeadline)
	for i := 0; i < workloadKeys; i++ {
		key := workloadKey(i)
		for {
			clientID := int(w.nextClientID.Add(1))
			in := KVInput{Op: OpGet, Key: key}
			id := w.h.Invoke(clientID, in)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			v, found, err := cl.Get(ctx, []byte(key))
			cancel()
			if err == nil {
				w.h.Return(id, KVOutput{Found: found, Value: string(v)})
				if found {
					s := string(v)
					res[key] = &s
				} else {
					res[key] = nil
				}
				break
			}
			w.h.Indeterminate(id)
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("final read of %s: %w", key, err)
			}
		}
	}
	return res, nil
}
