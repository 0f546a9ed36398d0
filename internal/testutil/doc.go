// Package testutil holds scaffolding shared by the tests of several
// packages, written once:
//
//   - a throw-away PKI for TLS tests (NewCA, CA.Issue and friends);
//   - waiting on a condition with a deadline instead of sleeping: WaitFor
//     and Wait fail the test, Poll and Await are for other goroutines and
//     for waits whose timeout is not a failure.
//
// It imports nothing of raftpipe, so any package's in-package tests may
// use it, raft/node's included. An in-process cluster builder needs
// raft/node and so lives apart, in internal/testcluster: were it here,
// raft/node's own tests could not import this package (an import cycle).
package testutil
