package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Defaults for the Config fields left zero. Each is a bound on something that
// would otherwise grow or wait without limit.
const (
	// DefaultQueueDepthMsgs bounds one peer's outbound queue. At a few hundred
	// bytes per queued Message struct this is about 2 MiB per peer, and it is
	// far deeper than a Raft leader's in-flight window, so a healthy link
	// never drops.
	DefaultQueueDepthMsgs = 8192
	// DefaultDialTimeout bounds one TCP connect (plus TLS handshake).
	DefaultDialTimeout = 2 * time.Second
	// DefaultBackoffMin is the first reconnect delay after a failure.
	DefaultBackoffMin = 50 * time.Millisecond
	// DefaultBackoffMax caps the reconnect delay, so a peer that comes back
	// is found again within about this long.
	DefaultBackoffMax = 2 * time.Second
	// DefaultHandshakeTimeout bounds the TLS and raftpipe handshakes on a new
	// connection, so a silent client cannot hold an inbound slot.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultWriteTimeout bounds one flush to a peer. A peer that accepts no
	// bytes for this long is treated as gone and its connection is redialed;
	// meanwhile the queue fills and Send reports drops (backpressure).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxInboundConns caps concurrently open inbound connections
	// (peer, snapshot and not-yet-identified ones together).
	DefaultMaxInboundConns = 64
	// DefaultMaxInboundSnapshots caps concurrent inbound snapshot transfers,
	// so that snapshot connections can never take all MaxInboundConns slots
	// from peer connections. A follower needs at most one at a time.
	DefaultMaxInboundSnapshots = 4
	// DefaultSnapshotChunkBytes is the data carried by one MsgSnap frame.
	DefaultSnapshotChunkBytes = 1 << 20
	// DefaultSnapshotIdleTimeout bounds the wait for the next snapshot chunk
	// on the receiving side, so a stalled sender frees its slot.
	DefaultSnapshotIdleTimeout = 30 * time.Second
)

// Internal bounds; not configurable because no deployment has needed to.
const (
	// flushThresholdBytes is how much encoded data the writer accumulates
	// before it writes mid-batch. Bigger batches are written in pieces of
	// about this size so that the receiver starts decoding early and the
	// buffer stays small.
	flushThresholdBytes = 256 << 10
	// maxRetainedBufBytes is the largest encode buffer a writer keeps between
	// batches; a larger one (after one huge message) is released to the GC.
	maxRetainedBufBytes = 1 << 20
	// snapFrameOverheadBytes is reserved in a snapshot frame for everything
	// but the chunk (header, metadata, membership lists).
	snapFrameOverheadBytes = 64 << 10
)

// Exported sentinel errors. Returned errors wrap them with %w and context.
var (
	// ErrClosed is returned by calls on a closed Transport.
	ErrClosed = errors.New("transport: closed")
	// ErrUnknownPeer means the destination node was never added with AddPeer.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrHandshake means the remote side's handshake was missing, malformed
	// or refused (wrong cluster, protocol version, node or connection kind).
	ErrHandshake = errors.New("transport: handshake failed")
	// ErrSnapshotRejected means the receiver's SnapshotHandler returned an
	// error (its text follows) or the receiver takes no snapshots.
	ErrSnapshotRejected = errors.New("transport: snapshot rejected by receiver")
	// ErrSnapshotStream means a snapshot stream broke its rules: a chunk out
	// of order, a frame that is not MsgSnap, or an early answer.
	ErrSnapshotStream = errors.New("transport: malformed snapshot stream")
)

// Config configures a Transport. Zero durations and bounds take the defaults
// above; ClusterID, NodeID and Handler are required.
type Config struct {
	// ClusterID is checked in every handshake, so that nodes of two clusters
	// that share a network never exchange messages.
	ClusterID uint64
	// NodeID is this node's ID; it is announced in handshakes, stamped on
	// snapshot chunks, and inbound messages addressed elsewhere are dropped.
	NodeID uint64
	// ListenAddr is where peers connect ("127.0.0.1:0" in tests).
	ListenAddr string
	// TLS, when set, wraps every connection: the server side requires and
	// verifies client certificates, the client side verifies the server (use
	// LoadTLSConfig). Nil means plain TCP.
	TLS *tls.Config
	// Wire holds the frame limits. Its Compression is this node's preferred
	// codec; each link uses it only if the peer advertises it (Negotiate).
	// Zero value means wire.DefaultOptions().
	Wire wire.Options
	// QueueDepthMsgs bounds each peer's outbound queue; a Send beyond it is
	// dropped and counted. Up to one more batch of this size can be in the
	// writer's hands at the same time.
	QueueDepthMsgs int
	// Handler receives every inbound Raft message, on the reader goroutine of
	// the connection it came on; it is called concurrently for different
	// peers. The message and every byte it references belong to the handler
	// from then on. It must not block for long: while it runs, that peer's
	// connection is not read and TCP pushes back on the sender.
	Handler func(m *wire.Message)
	// SnapshotHandler consumes an inbound snapshot: meta is the first chunk's
	// message with SnapData cleared, body yields the concatenated chunk data
	// and then io.EOF. Its error is sent back to the sender. Nil refuses all
	// inbound snapshots.
	SnapshotHandler func(meta *wire.Message, body io.Reader) error
	// PeerDown, if set, is called with a peer's ID when its outbound
	// connection breaks (after a successful connection, once per loss, on
	// the peer's writer goroutine; it must not block). The runtime uses it
	// to wake idle Raft groups that would otherwise not notice: a
	// quiesced group sends nothing, so no failed send reports the loss.
	PeerDown func(id uint64)
	// Logger receives connection events and the reasons connections close.
	// Nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds one connection attempt (TCP connect and TLS).
	DialTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered, doubling delay between
	// reconnect attempts to one peer.
	BackoffMin, BackoffMax time.Duration

	// HandshakeTimeout bounds the raftpipe (and TLS) handshake on every new
	// connection.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one flush to a peer connection; see
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxInboundConns caps concurrently open inbound connections; beyond it
	// new ones are closed at once and counted in Stats.InboundRefused.
	MaxInboundConns int
	// MaxInboundSnapshots caps concurrent inbound snapshot transfers; beyond
	// it a snapshot is rejected at once (the sender gets
	// ErrSnapshotRejected and retries later).
	MaxInboundSnapshots int
	// SnapshotChunkBytes is the data carried per MsgSnap frame; it is reduced
	// to fit Wire.MaxFrameBytes.
	SnapshotChunkBytes int
	// SnapshotIdleTimeout bounds the receiver's wait for each snapshot chunk.
	SnapshotIdleTimeout time.Duration
}

// withDefaults returns cfg with zero fields filled in, or an error naming the
// first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.NodeID == 0 {
		return cfg, errors.New("transport: Config.NodeID must be non-zero")
	}
	if cfg.Handler == nil {
		return cfg, errors.New("transport: Config.Handler is required")
	}
	if cfg.Wire == (wire.Options{}) {
		cfg.Wire = wire.DefaultOptions()
	}
	if err := cfg.Wire.Validate(); err != nil {
		return cfg, fmt.Errorf("transport: Config.Wire: %w", err)
	}
	if cfg.ListenAddr == "" {
		return cfg, errors.New("transport: Config.ListenAddr is required")
	}
	setDefault := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDefaultDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setDefault(&cfg.QueueDepthMsgs, DefaultQueueDepthMsgs)
	setDefault(&cfg.MaxInboundConns, DefaultMaxInboundConns)
	setDefault(&cfg.MaxInboundSnapshots, DefaultMaxInboundSnapshots)
	setDefault(&cfg.SnapshotChunkBytes, DefaultSnapshotChunkBytes)
	setDefaultDur(&cfg.DialTimeout, DefaultDialTimeout)
	setDefaultDur(&cfg.BackoffMin, DefaultBackoffMin)
	setDefaultDur(&cfg.BackoffMax, DefaultBackoffMax)
	setDefaultDur(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefaultDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefaultDur(&cfg.SnapshotIdleTimeout, DefaultSnapshotIdleTimeout)
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if limit := cfg.Wire.MaxFrameBytes - snapFrameOverheadBytes; cfg.SnapshotChunkBytes > limit {
		if limit < 1 {
			return cfg, fmt.Errorf("transport: Config.Wire.MaxFrameBytes %d leaves no room for snapshot chunks (need > %d)",
				cfg.Wire.MaxFrameBytes, snapFrameOverheadBytes)
		}
		cfg.SnapshotChunkBytes = limit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
