// Package chaos is a forwarding stub: the harness moved to internal/chaos.
//
// It stays only because raft/node's tests still import it, and those files
// are being rewritten in parallel by the Host/Replica refactor. Once they
// import internal/chaos, delete this directory.
//
// Deprecated: import github.com/raftpipe/raftpipe/internal/chaos.
package chaos

import "github.com/raftpipe/raftpipe/internal/chaos"

// Network is internal/chaos.Network.
type Network = chaos.Network

// NetworkConfig is internal/chaos.NetworkConfig.
type NetworkConfig = chaos.NetworkConfig

// NewNetwork is internal/chaos.NewNetwork.
func NewNetwork(targets []string, cfg NetworkConfig) (*Network, error) {
	return chaos.NewNetwork(targets, cfg)
}
