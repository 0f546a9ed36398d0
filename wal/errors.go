package wal

import (
	"errors"
	"fmt"
)

var (
	// ErrCompacted means the requested index is below FirstIndex()-1: a
	// snapshot covers it and the entry is gone.
	ErrCompacted = errors.New("wal: index compacted")
	// ErrUnavailable means the requested index is above LastIndex().
	ErrUnavailable = errors.New("wal: index unavailable")
	// ErrBaseTooLarge means CompactPrefix or Reset was given a base longer
	// than the format allows (maxBaseBytes, 1 MiB).
	ErrBaseTooLarge = errors.New("wal: base too large")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("wal: log closed")
	// ErrCorrupt means recovery or a read found a record that fails its CRC
	// or breaks the log's invariants somewhere other than the torn tail. It
	// is wrapped with the file name and byte offset (see CorruptError).
	ErrCorrupt = errors.New("wal: corrupt")
)

// CorruptError names where corruption was found. It unwraps to ErrCorrupt.
type CorruptError struct {
	// File is the segment file's path.
	File string
	// Offset is the byte offset of the bad record or header in File.
	Offset int64
	// Reason says which check failed.
	Reason string
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap lets errors.Is(err, ErrCorrupt) succeed.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// corruptf builds a *CorruptError.
func corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
