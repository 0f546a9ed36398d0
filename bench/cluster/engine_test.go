package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/node"
	"github.com/raftpipe/raftpipe/raft/sm"
)

// engineGroup0 is a one-group node's state machine on a kv.Engine (group
// 0's view) instead of a kv.Store, for BenchmarkClusterSingleGroupEngine.
type engineGroup0 struct {
	*kv.Group
	e *kv.Engine
}

// Close closes the view, then its engine.
func (g engineGroup0) Close() error { return errors.Join(g.Group.Close(), g.e.Close()) }

// BenchmarkClusterSingleGroupEngine is BenchmarkCluster's one group with
// the state machine on a kv.Engine group view rather than a kv.Store:
// whether a one-group node would lose by moving to the engine (it keeps
// the Store; docs/runtime.md, "State machines"). Take turns with
// BenchmarkCluster:
//
//	go test ./bench/cluster -run '^$' -bench 'Cluster(SingleGroupEngine)?/clients=256' -benchtime 100000x
func BenchmarkClusterSingleGroupEngine(b *testing.B) {
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d/payload=128", clients), func(b *testing.B) {
			benchClusterTuned(b, clients, 128, 1, false, func(cfg *node.Config) {
				kvOpts := cfg.KV
				cfg.OpenStateMachine = func(fs vfs.FS, dataDir string) (sm.StateMachine, error) {
					o := kvOpts
					o.FS, o.DisableWAL = fs, true
					e, err := kv.OpenEngine(fs.PathJoin(dataDir, "engine"), o)
					if err != nil {
						return nil, err
					}
					g, err := e.Group(0)
					if err != nil {
						e.Close()
						return nil, err
					}
					return engineGroup0{g, e}, nil
				}
			})
		})
	}
}
