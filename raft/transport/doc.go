// Package transport carries Raft messages between the nodes of one cluster
// over TCP (optionally mutual TLS). It is the I/O half of replication: the
// consensus core (package raft) produces messages and consumes them; this
// package moves them, in order per link, as cheaply per message as it can,
// and never lets a slow or hostile peer grow memory or stall the others.
//
// # Connections
//
// Each node listens on Config.ListenAddr. For every peer added with AddPeer
// it dials one outbound peer connection and sends on it; the peer does the
// same towards us. So a pair of nodes shares two TCP connections, each
// carrying messages in one direction only:
//
//	node 1                                   node 2
//	Send(To:2) -> queue -> writer ==conn A==> reader -> Handler
//	Handler <- reader <==conn B== writer <- queue <- Send(To:1)
//
// The remote never writes on an outbound connection after the handshake; a
// small goroutine reads from it anyway, only to notice at once when it dies.
// Messages are keyed by host (node ID), not by Raft group: every Message
// carries its Group, and the messages of every group bound for one host go
// into that host's one queue; the writer swaps out the whole queue and
// encodes it into one buffer, so frames of many groups share each write()
// call (up to flushThresholdBytes per call). A host with G groups therefore
// still has one outbound connection per peer host, not G. Config.PeerDown
// reports a lost connection, so that a runtime can tell its idle groups.
//
// # Handshake
//
// Every connection, peer or snapshot, begins with a wire.Handshake frame in
// each direction: the dialer sends first, the acceptor answers with its own
// (always, so a refused dialer can log why) and then validates. Both sides
// check the cluster ID, the protocol version (the frame header's version
// byte is checked before that), a non-zero node ID and the connection kind;
// the dialer also checks that the node answering is the one it meant to
// reach. Any mismatch is logged with the reason and the connection closed.
// The handshake also negotiates compression: each side advertises the
// codecs it can decode (wire.SupportedFeatures) and the sender of each
// direction picks its preferred Config.Wire.Compression if the other side
// supports it (wire.Negotiate); frames say which codec they use, so the two
// directions may differ.
//
// # Queues, batching and backpressure
//
// Send never blocks. It copies the Message struct (not the byte slices it
// references: entry data, Context and SnapData are shared, and the caller
// must not modify them afterwards) into the peer's queue, bounded by
// Config.QueueDepthMsgs, and returns false (counted in PeerStats.Dropped) if
// the queue is full, the link is down, or the peer is unknown
// (Stats.DroppedUnknownPeer). Raft tolerates message loss; the leader's
// flow control (in-flight window, probe state) is what keeps the queue short
// in normal operation.
//
// The peer's writer goroutine takes the whole queue under one lock hand-off
// (swapping slices), encodes every message into one reused buffer, and
// writes it; a big batch is written in pieces of about 256 KiB. It never
// waits for responses (pipelining) and sleeps only when the queue is empty,
// so a burst of messages costs one wake-up and one or a few write syscalls.
// When the peer reads slowly, TCP pushes back, the writer blocks in write,
// the queue fills, and Send starts dropping: backpressure without unbounded
// memory. A write that makes no progress for Config.WriteTimeout closes the
// connection.
//
// While a link is down (dialing or backing off) Send drops instead of
// queuing: queuing would hold memory for a peer that may be gone for long,
// and deliver stale messages when it returns. Messages queued or in the
// socket when a connection fails are lost; from the moment a new connection
// is up, messages arrive in the order they were sent.
//
// # Inbound messages and ownership
//
// Each accepted connection has its own reader goroutine (at most
// Config.MaxInboundConns at a time; more are closed at once). It decodes
// frames and calls Config.Handler with a freshly allocated Message whose
// entries alias a payload buffer that is never reused: the handler owns the
// message and every byte it references, and may keep them (for example in
// the log cache) without copying. To make that cheap, the reader reads the
// socket straight into 512 KiB slabs and parses frames in place
// (wire.ParseFrame): no copy out of a read buffer and no allocation per
// frame, but a retained message keeps its whole slab alive. Handler runs on
// the reader goroutine, concurrently for different peers, and should hand
// the message off quickly: while it runs that connection is not read. Messages addressed to another
// node, or claiming another sender than the connection's node, are dropped
// (Stats.DroppedMisrouted). A newer peer connection from the same node
// replaces (closes) the older one.
//
// Bad input closes only the connection it came on, with a logged reason and
// a counter (Stats.InboundRefused before the handshake completes,
// Stats.InboundBadFrames after): garbage, a frame over
// Config.Wire.MaxFrameBytes (rejected before allocating), a bad CRC, a
// truncated frame, or a frame type that does not belong on the connection.
// The transport keeps serving every other connection.
//
// # Snapshots
//
// SendSnapshot opens a separate connection of kind ConnSnapshot for each
// transfer, so that a multi-gigabyte snapshot never delays heartbeats or
// appends queued on the peer connection. It cuts the body into MsgSnap
// frames of Config.SnapshotChunkBytes (1 MiB by default) with SnapOffset and,
// on the last, SnapDone, and then waits for one MsgSnapResp. The receiver
// calls Config.SnapshotHandler with the metadata and an io.Reader that pulls
// chunks from the connection on demand (one chunk of memory, whatever the
// snapshot size; offsets must be contiguous); when the handler returns, the
// receiver answers with Reject set if the handler failed or did not read
// to the end, and SendSnapshot returns ErrSnapshotRejected. The reason text
// stays in the receiver's log: the wire format's MsgSnapResp has no field
// for it. A rejection that comes mid-stream stops the sender early.
//
// # Reconnecting
//
// A writer whose connection fails (write error, remote close, address
// change via AddPeer) closes it, discards its queue, and redials after a
// delay that starts at Config.BackoffMin, doubles per consecutive failure up
// to Config.BackoffMax, and is jittered into [d/2, d) so that a restarted
// cluster does not redial in lockstep. PeerStats counts reconnects and dial
// failures.
//
// # TLS
//
// With Config.TLS set, every connection is TLS (LoadTLSConfig builds a
// suitable config from PEM files): the acceptor requires and verifies a
// client certificate signed by the configured CA, and the dialer verifies
// the server's certificate against the host it dialed (Config.TLS.ServerName
// if set). A peer without a valid certificate fails the TLS handshake and is
// counted in Stats.InboundRefused; it never reaches the raftpipe handshake.
//
// # Lifecycle
//
// New starts the listener; AddPeer and RemovePeer start and stop links (a
// removed link's goroutines have exited when RemovePeer returns); Close stops
// everything and returns only after every goroutine the transport started
// has exited. Tests check this with go.uber.org/goleak.
package transport
