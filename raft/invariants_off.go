//go:build !invariants

package raft

// invariantsEnabled is false in normal builds; see invariants_on.go.
const invariantsEnabled = false
