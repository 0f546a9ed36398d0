//go:build invariants

package raft

// invariantsEnabled turns on the costly invariant checks (whole-log scans
// after every input). The simulation is meant to run with them:
// go test -tags invariants ./raft -run Sim
const invariantsEnabled = true
