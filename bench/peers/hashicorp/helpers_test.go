package main

import (
	"bytes"

	"github.com/hashicorp/raft"
)

// raftLog builds command log entries for FSM tests.
type raftLog struct{ data []byte }

func (l raftLog) log() *raft.Log { return &raft.Log{Type: raft.LogCommand, Data: l.data} }

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	buf       bytes.Buffer
	cancelled bool
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { s.cancelled = true; return nil }
