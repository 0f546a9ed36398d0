package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/raftpipe/raftpipe/internal/testutil"
	"github.com/raftpipe/raftpipe/wire"
)

// snapMeta is the metadata message for a test snapshot to node to.
func snapMeta(to uint64) *wire.Message {
	return &wire.Message{Type: wire.MsgSnap, To: to, Term: 5,
		Snapshot: wire.SnapshotMeta{Index: 1234, Term: 4, Conf: wire.ConfState{Voters: []uint64{1, 2, 3}}}}
}

// TestSnapshotWhileHeartbeatsFlow streams a multi-chunk snapshot while the
// sender keeps sending heartbeats on the peer connection. The receiving
// handler stops reading after the first chunk until 200 more heartbeats have
// arrived: that can only happen if heartbeats do not queue behind the
// snapshot. Then it reads the rest, and the bytes must match.
func TestSnapshotWhileHeartbeatsFlow(t *testing.T) {
	inB := newInbox()
	var mu sync.Mutex
	var gotMeta *wire.Message
	var gotBody []byte
	cfgB := testConfig(2, inB.handle)
	cfgB.SnapshotHandler = func(meta *wire.Message, body io.Reader) error {
		first := make([]byte, 1000)
		if _, err := io.ReadFull(body, first); err != nil {
			return err
		}
		n := inB.count(1)
		if err := testutil.Await(testDeadline, "heartbeats during the snapshot", func() bool { return inB.count(1) >= n+200 }); err != nil {
			return err
		}
		rest, err := io.ReadAll(body)
		mu.Lock()
		gotMeta, gotBody = meta, append(first, rest...)
		mu.Unlock()
		return err
	}
	b := newNode(t, cfgB)
	cfgA := testConfig(1, func(*wire.Message) {})
	cfgA.SnapshotChunkBytes = 64 << 10
	a := newNode(t, cfgA)
	connect(t, a, b)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			if !sendRetry(t, a, &wire.Message{Type: wire.MsgHeartbeat, From: 1, To: 2, Commit: seq}) {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// 4 MiB + a bit: 65 chunks, the last one partial.
	data := make([]byte, 4<<20+123)
	rand.Read(data)
	if err := a.SendSnapshot(context.Background(), snapMeta(2), bytes.NewReader(data)); err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(gotBody, data) {
		t.Fatalf("snapshot body differs: got %d bytes, sent %d", len(gotBody), len(data))
	}
	if gotMeta.From != 1 || gotMeta.Term != 5 || gotMeta.Snapshot.Index != 1234 || gotMeta.Snapshot.Term != 4 ||
		len(gotMeta.Snapshot.Conf.Voters) != 3 || gotMeta.SnapData != nil {
		t.Fatalf("meta = %+v", gotMeta)
	}
}

// TestSnapshotExactChunkMultiple sends a body that is an exact multiple of
// the chunk size (so the last chunk is empty) and an empty body.
func TestSnapshotExactChunkMultiple(t *testing.T) {
	var got [][]byte
	cfgB := testConfig(2, func(*wire.Message) {})
	cfgB.SnapshotHandler = func(meta *wire.Message, body io.Reader) error {
		b, err := io.ReadAll(body)
		got = append(got, b)
		return err
	}
	b := newNode(t, cfgB)
	cfgA := testConfig(1, func(*wire.Message) {})
	cfgA.SnapshotChunkBytes = 1000
	a := newNode(t, cfgA)
	a.AddPeer(2, b.Addr().String())
	for _, n := range []int{3000, 0, 1} {
		data := bytes.Repeat([]byte{7}, n)
		if err := a.SendSnapshot(context.Background(), snapMeta(2), bytes.NewReader(data)); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if last := got[len(got)-1]; !bytes.Equal(last, data) {
			t.Fatalf("sent %d bytes, received %d", n, len(last))
		}
	}
}

// TestSnapshotRejected covers the ways a receiver refuses: the handler
// fails (early, mid-stream), it stops reading but returns nil, or there is
// no handler.
func TestSnapshotRejected(t *testing.T) {
	data := make([]byte, 3<<20)
	for _, tc := range []struct {
		name    string
		handler func(*wire.Message, io.Reader) error
	}{
		{"handler fails at once", func(*wire.Message, io.Reader) error { return errors.New("disk full") }},
		{"handler fails mid-stream", func(_ *wire.Message, body io.Reader) error {
			io.CopyN(io.Discard, body, 1<<20)
			return errors.New("disk full")
		}},
		{"handler returns early", func(_ *wire.Message, body io.Reader) error {
			_, err := io.CopyN(io.Discard, body, 100)
			return err
		}},
		{"no handler", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgB := testConfig(2, func(*wire.Message) {})
			cfgB.SnapshotHandler = tc.handler
			b := newNode(t, cfgB)
			cfgA := testConfig(1, func(*wire.Message) {})
			cfgA.SnapshotChunkBytes = 64 << 10
			a := newNode(t, cfgA)
			a.AddPeer(2, b.Addr().String())
			err := a.SendSnapshot(context.Background(), snapMeta(2), bytes.NewReader(data))
			if !errors.Is(err, ErrSnapshotRejected) {
				t.Fatalf("SendSnapshot = %v, want ErrSnapshotRejected", err)
			}
		})
	}
}

// TestSnapshotCancelAndClose: a cancelled context and a closed transport end
// a transfer whose receiver never answers; the receiving handler sees its
// body fail.
func TestSnapshotCancelAndClose(t *testing.T) {
	handlerErr := make(chan error, 2)
	cfgB := testConfig(2, func(*wire.Message) {})
	cfgB.SnapshotHandler = func(_ *wire.Message, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		handlerErr <- err
		return err
	}
	b := newNode(t, cfgB)
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	a.AddPeer(2, b.Addr().String())

	if err := a.SendSnapshot(context.Background(), snapMeta(3), bytes.NewReader(nil)); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("snapshot to unknown peer: %v", err)
	}

	// A body that never ends: blocks after its first bytes until cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	body := &blockingBody{started: make(chan struct{}), ctx: ctx}
	done := make(chan error)
	go func() { done <- a.SendSnapshot(ctx, snapMeta(2), body) }()
	<-body.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled SendSnapshot = %v", err)
	}
	if err := <-handlerErr; err == nil {
		t.Fatal("receiver's body read succeeded after the sender went away")
	}

	body2 := &blockingBody{started: make(chan struct{}), ctx: context.Background(), unblock: make(chan struct{})}
	go func() { done <- a.SendSnapshot(context.Background(), snapMeta(2), body2) }()
	<-body2.started
	// Close cannot interrupt a Read inside the caller's body; it closes the
	// connection, and the next write fails with ErrClosed.
	closed := make(chan error)
	go func() { closed <- a.Close() }()
	testutil.Wait(t, "transport to be marked closed", a.isClosed)
	close(body2.unblock)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("SendSnapshot during Close = %v, want ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// blockingBody yields one chunk-sized run of bytes and then blocks until
// ctx is done or unblock is closed, then yields more forever.
type blockingBody struct {
	started chan struct{}
	ctx     context.Context
	unblock chan struct{}
	n       int
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if b.n >= DefaultSnapshotChunkBytes {
		if b.n == DefaultSnapshotChunkBytes {
			close(b.started)
			b.n++
		}
		select {
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-b.unblock:
		}
	}
	clear(p)
	b.n += len(p)
	return len(p), nil
}

// TestSnapshotConcurrencyCap rejects a second concurrent inbound snapshot
// when MaxInboundSnapshots is 1, and accepts again once the first is done.
func TestSnapshotConcurrencyCap(t *testing.T) {
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	cfgB := testConfig(2, func(*wire.Message) {})
	cfgB.MaxInboundSnapshots = 1
	cfgB.SnapshotHandler = func(meta *wire.Message, body io.Reader) error {
		entered <- struct{}{}
		if meta.Snapshot.Index == 1 {
			<-release
		}
		_, err := io.Copy(io.Discard, body)
		return err
	}
	b := newNode(t, cfgB)
	a := newNode(t, testConfig(1, func(*wire.Message) {}))
	a.AddPeer(2, b.Addr().String())

	first := make(chan error, 1)
	go func() {
		m := snapMeta(2)
		m.Snapshot.Index = 1
		first <- a.SendSnapshot(context.Background(), m, bytes.NewReader(make([]byte, 1000)))
	}()
	<-entered
	if err := a.SendSnapshot(context.Background(), snapMeta(2), bytes.NewReader(nil)); !errors.Is(err, ErrSnapshotRejected) {
		t.Fatalf("second concurrent snapshot = %v, want ErrSnapshotRejected", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	if err := a.SendSnapshot(context.Background(), snapMeta(2), bytes.NewReader(nil)); err != nil {
		t.Fatalf("snapshot after the first finished: %v", err)
	}
}
