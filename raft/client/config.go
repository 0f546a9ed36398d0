package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMaxInflight bounds the requests outstanding on one connection.
	// At ~10 µs per request on the node, 1024 in flight is ~10 ms of work:
	// enough to keep a leader's batches full, small enough to bound memory.
	DefaultMaxInflight = 1024
	// DefaultRequestTimeout bounds one attempt when the caller's context has
	// no deadline. Longer than an election, so a healthy cluster never hits it.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxRetries is the number of extra attempts after retryable
	// failures. With the backoff below it covers about 1.5 s of leader
	// election before giving up.
	DefaultMaxRetries = 16
)

// Internal bounds. None is part of the protocol.
const (
	// dialTimeout bounds TCP connect plus TLS plus the handshake exchange.
	dialTimeout = 2 * time.Second
	// retryBackoffMin is the first pause before retrying an address that
	// failed or a node that was busy; it doubles per attempt.
	retryBackoffMin = 2 * time.Millisecond
	// retryBackoffMax caps the pause, so a new leader is found within about
	// this long after it is elected.
	retryBackoffMax = 100 * time.Millisecond
	// maxKnownAddrs bounds the address list: configured addresses plus
	// leader addresses learned from hints and shard maps. Groups have 3 or
	// 5 members, so this is many clusters' worth; a group whose leader
	// cannot be learned follows hints and rotation instead.
	maxKnownAddrs = 64
	// frameBufferBytes is the reusable payload buffer per connection; a
	// response larger than this gets a fresh allocation for that frame.
	frameBufferBytes = 64 << 10
	// maxRetainedWriteBufferBytes is the largest write buffer kept for reuse
	// after a write; a burst of large values should not pin memory forever.
	maxRetainedWriteBufferBytes = 1 << 20
)

// Config configures a Client. Only Addrs and ClusterID are required.
type Config struct {
	// Addrs are the client addresses (host:port) of some or all nodes. The
	// leader is discovered from them; nodes name the leader in redirects, so
	// one reachable address is enough.
	Addrs []string
	// ClusterID must equal the nodes' cluster ID; a node of another cluster
	// refuses the connection, which keeps a misconfigured client from
	// writing into the wrong cluster.
	ClusterID uint64
	// TLS, when set, wraps every connection in TLS with this config. If its
	// ServerName is empty the host part of the address is used.
	TLS *tls.Config
	// Wire sets frame size and compression. The zero value means
	// wire.DefaultOptions(). Compression is the preferred codec; the one
	// actually used is negotiated with each node.
	Wire wire.Options
	// MaxInflight bounds the requests outstanding per connection; callers
	// beyond it block (until their context ends). It also bounds the pending
	// map and, with Wire.MaxFrameBytes, the write buffer. 0 means
	// DefaultMaxInflight.
	MaxInflight int
	// RequestTimeout bounds one attempt when the call's context has no
	// deadline, so a lost response cannot hang a caller forever. 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxRetries is how many extra attempts a call makes after retryable
	// failures (see the package doc for which those are). 0 means
	// DefaultMaxRetries; a negative value means no retries.
	MaxRetries int
	// Logger receives connection and leader-change events. nil discards.
	Logger *slog.Logger
}

// withDefaults validates cfg and fills its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Addrs) == 0 {
		return cfg, fmt.Errorf("client: Config.Addrs is empty")
	}
	if len(cfg.Addrs) > maxKnownAddrs {
		return cfg, fmt.Errorf("client: Config.Addrs has %d addresses, at most %d allowed", len(cfg.Addrs), maxKnownAddrs)
	}
	for _, a := range cfg.Addrs {
		if a == "" {
			return cfg, fmt.Errorf("client: Config.Addrs contains an empty address")
		}
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	if cfg.Wire == (wire.Options{}) {
		cfg.Wire = wire.DefaultOptions()
	}
	if err := cfg.Wire.Validate(); err != nil {
		return cfg, fmt.Errorf("client: Config.Wire: %w", err)
	}
	if cfg.MaxInflight < 0 {
		return cfg, fmt.Errorf("client: Config.MaxInflight %d is negative", cfg.MaxInflight)
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.RequestTimeout < 0 {
		return cfg, fmt.Errorf("client: Config.RequestTimeout %v is negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
