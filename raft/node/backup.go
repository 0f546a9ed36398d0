package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/raftpipe/raftpipe/wire"
)

// maxSnapshotStreams bounds concurrent GET /admin/snapshot streams on one
// admin handler: each holds a Pebble checkpoint (hard links that keep
// compacted files on disk) for as long as its client reads.
const maxSnapshotStreams = 1

// snapshotStreams counts the streams in flight per admin handler.
type snapshotStreams struct{ n atomic.Int32 }

// serveSnapshot streams a consistent snapshot of this node's state machine
// (its own bytes, without the runtime's frame: for kv, the archive whose
// header records the applied index and term) for `raftnode admin snapshot
// save`. A backup holds data only; SeedFromSnapshot gives the cluster it
// founds a membership of its own.
//
// The node must lead, and first completes a ReadIndex round, so the
// checkpoint holds every write acknowledged before the request arrived:
// a follower may trail, and a deposed leader may not know it is. Other
// nodes answer 409 naming the leader, like the membership endpoints.
//
// Errors before the first byte are an HTTP error status; an error during
// the stream aborts the connection, so the client sees a truncated body
// (which the archive's stream CRC would reject anyway), never a clean end.
func (n *Node) serveSnapshot(streams *snapshotStreams) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(n.replicas) > 1 {
			// A snapshot of group 0 alone would look like a whole backup.
			http.Error(w, fmt.Sprintf("backups of a node with %d groups are not supported yet (only single-group nodes)", len(n.replicas)), http.StatusNotImplemented)
			return
		}
		if streams.n.Add(1) > maxSnapshotStreams {
			streams.n.Add(-1)
			http.Error(w, "a snapshot is already being streamed from this node; retry when it is done", http.StatusServiceUnavailable)
			return
		}
		defer streams.n.Add(-1)
		ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
		err := n.readBarrier(ctx)
		cancel()
		switch {
		case errors.Is(err, ErrNotLeader):
			http.Error(w, fmt.Sprintf("node %d is not the leader (node %d leads): take the snapshot from the leader", n.cfg.ID, n.Leader()), http.StatusConflict)
			return
		case err != nil:
			http.Error(w, "snapshot: read barrier: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		cw := &countingWriter{w: w}
		info, err := n.r0.sm.WriteSnapshot(cw)
		if err != nil {
			n.log.Warn("snapshot stream to admin client failed", "bytes", cw.n, "err", err)
			if cw.n == 0 {
				http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
				return
			}
			panic(http.ErrAbortHandler)
		}
		n.log.Info("snapshot streamed to admin client", "index", info.Index, "term", info.Term, "bytes", cw.n, "remote", r.RemoteAddr)
	}
}

// readBarrier completes a linearizable read (a ReadIndex round, then the
// wait for the state machine to apply up to its index): afterwards the
// state machine holds every write acknowledged before the call. Only the
// leader can; others get ErrNotLeader.
func (n *Node) readBarrier(ctx context.Context) error {
	done := make(chan *wire.ClientResponse, 1)
	n.Submit(&wire.ClientRequest{Op: wire.OpGet}, func(resp *wire.ClientResponse) { done <- resp })
	select {
	case resp := <-done:
		return statusErr(resp) // nil for ok and not found
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}
