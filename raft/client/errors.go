package client

import "errors"

// Sentinel errors. Every error a Client method returns wraps one of these
// (or a context error) with %w, so callers branch with errors.Is. An error
// can wrap two of them: a write cut off by Close is both ErrUnknownOutcome
// and ErrClosed.
var (
	// ErrClosed means the Client was closed before or during the call.
	ErrClosed = errors.New("client: closed")
	// ErrNotLeader means every attempt reached a node that was not the
	// leader (an election is in progress, or no address given is the
	// leader). The request was not applied.
	ErrNotLeader = errors.New("client: no leader found")
	// ErrBusy means the node kept shedding load for every attempt. The
	// request was not applied.
	ErrBusy = errors.New("client: node busy")
	// ErrTimeout means one attempt got no answer within
	// Config.RequestTimeout. For a write it is wrapped in ErrUnknownOutcome.
	ErrTimeout = errors.New("client: request timed out")
	// ErrUnknownOutcome means a write was (or may have been) sent but no
	// answer arrived: it may or may not have been applied, now or later.
	// It wraps the cause (a connection error, ErrTimeout, a context error,
	// ErrClosed, or a StatusUnknown answer). A linearizability checker must
	// record such a write as indeterminate, not as failed.
	ErrUnknownOutcome = errors.New("client: outcome unknown")
	// ErrUnavailable means no node could be reached (dial, TLS or handshake
	// failed, or connections broke before the request was sent) on every
	// attempt. The request was not applied.
	ErrUnavailable = errors.New("client: no node reachable")
	// ErrHandshake means a node answered with another cluster ID, protocol
	// version or connection kind. It is wrapped in ErrUnavailable when every
	// attempt failed that way.
	ErrHandshake = errors.New("client: handshake refused")
	// ErrBadRequest means the node rejected the request as malformed or over
	// a limit (StatusBadRequest); the text from the node follows.
	ErrBadRequest = errors.New("client: bad request")
	// ErrServer means the node reported an internal error (StatusError); the
	// text from the node follows. The request was not retried.
	ErrServer = errors.New("client: server error")
	// ErrProtocol means the node sent something other than a client
	// response, or a response that does not decode; the connection is
	// closed.
	ErrProtocol = errors.New("client: protocol violation")
)
