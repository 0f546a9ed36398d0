// Package kv is raftpipe's replicated key-value state machine: it applies
// committed Raft entries to a Pebble database, serves local reads, and
// writes and installs snapshots. Store implements sm.StateMachine, the
// runtime's seam to its data; it knows nothing of membership, which the
// runtime keeps in the WAL and in its own snapshot frame.
//
// # How the node uses it
//
//	s, _ := kv.Open(dir, kv.Options{DisableWAL: true})
//	// apply loop, per batch of committed entries:
//	s.Apply(entries, results)              // one Pebble batch, applied index and term included
//	// before compacting the Raft log up to index i:
//	s.Flush()                              // now everything <= AppliedIndex() is durable
//	// leader sending a snapshot / follower installing one:
//	info, _ := s.WriteSnapshot(w)          // info.Index, info.Term: the snapshot's identity
//	info, _ = s.Restore(r)                 // what was installed, checked against the data
//	// at start-up, identifying a staged snapshot file without installing it:
//	info, _ = kv.ReadSnapshotInfo(f)
//
// A snapshot's identity (index, term) comes from the state machine
// alone: the term of the last applied entry is stored with the applied
// index, so the runtime never has to look it up in a Raft log that may
// have been compacted past it.
//
// Proposals carry commands built by EncodeCommand (check a request with
// ValidateRequest before proposing it). Apply returns one Result per entry,
// which the node turns into the client's response. Get reads the local
// state; for a linearizable read the node completes a ReadIndex round and
// waits until AppliedIndex reaches the read index first.
//
// # Why Pebble's WAL can be off
//
// The Raft log is the durable record of every command; Pebble's WAL would
// be a second copy of the same bytes. With Options.DisableWAL the store
// stays correct because:
//
//  1. The applied index and term live in the same Pebble batch as the data
//     of the entries they cover, so every state Pebble can come back with
//     after a crash (whatever its memtables had flushed) is the state as of
//     some applied index, together with that index and its term. There is
//     no state "half way through" a batch.
//  2. On restart the node reads AppliedIndex and replays the Raft log from
//     AppliedIndex+1. Apply skips anything at or below AppliedIndex, so
//     replaying more than needed is harmless.
//  3. Therefore the node must never compact the Raft log past what Pebble
//     has made durable: call Flush, then compact up to the AppliedIndex
//     read before the Flush. (WriteSnapshot flushes too.)
//
// With the WAL on, Apply still commits without fsync (the Raft log is the
// durable record), and Flush syncs Pebble's WAL instead of flushing a
// memtable.
//
// # Semantics of the operations
//
//   - put: sets the key. StatusOK.
//   - delete: removes the key. StatusOK whether or not it existed (Apply
//     does not read before deleting, so deletes cost what puts cost).
//   - cas: if the key's current value equals Expect (with FlagExpectAbsent:
//     if the key does not exist), sets it to Value and returns StatusOK;
//     otherwise StatusCASFailed with the current value (nil if absent). A
//     CAS sees the writes of earlier entries in the same Apply call.
//   - noop, EntryNoop, EntryConfChange, EntryNormal with empty Data: only
//     advance the applied index. StatusOK.
//   - get (if ever replicated): StatusOK with a copy of the value, or
//     StatusNotFound.
//   - Data that DecodeCommand rejects: StatusBadRequest; every replica
//     decodes the same bytes, so every replica agrees.
//
// # Command layout (entry Data), version 1
//
//	+---------+----+-------+------------+-----+--------------+-------+---------------+--------+
//	| version | op | flags | uvarint    | key | uvarint      | value | uvarint       | expect |
//	| =1      | u8 | u8    | len(key)   |     | len(value)   |       | len(expect)   |        |
//	+---------+----+-------+------------+-----+--------------+-------+---------------+--------+
//
// op and flags are wire.Op and wire.ReqFlags. The client's request ID is
// not replicated. A put of a 16-byte key and 128-byte value is 3+1+16+2+128+1
// = 151 bytes. DecodeCommand rejects unknown versions, ops and flags, keys
// over MaxKeyBytes, values or expects over MaxValueBytes, fields an op does
// not use, and missing or trailing bytes.
//
// # On-disk layout
//
//	dir/CURRENT          "db-000007\n": the active database (replaced only by rename)
//	dir/CURRENT.tmp      the next CURRENT, before its rename (removed by Open)
//	dir/db-000007/       the Pebble database
//	dir/db-000008/       a Restore in progress, or the leftover of one (removed by Open)
//	dir/snapshot-N.tmp/  a checkpoint being streamed by WriteSnapshot (removed by Open)
//
// Inside Pebble, user keys are stored behind the prefix byte 0x01; the
// store's own records are behind 0x00, so no user key can collide with
// them: the applied record (0x00 "applied": index u64 | term u64, 16 bytes
// big-endian, of the last applied entry) and the format record (0x00
// "format": u32 big-endian, storeFormatVersion = 2), written and flushed
// when a database is created, before the first CURRENT names it. Format 1
// had no format record and kept the runtime's membership under 0x00
// "meta"; Open and Restore refuse such a database with ErrOldFormat.
//
// # Crash safety
//
// Every file operation goes through one seam, Options.FS (a Pebble vfs.FS,
// also given to Pebble, so checkpoints use it too); production code has no
// test hooks. Multi-step changes are ordered so that every prefix is
// recoverable, and Open finishes or undoes an interrupted one:
//
//   - Open creates dir and syncs its parents, removes leftovers (other
//     db-<n>, CURRENT.tmp, snapshot-N.tmp), and on a fresh store creates
//     db-000001 and only then writes the first CURRENT. Without a CURRENT,
//     Open starts afresh: nothing was ever applied to a database no CURRENT
//     named.
//   - Restore writes the snapshot into db-<n+1>, fsyncs every file, the new
//     directory and dir, opens it and checks that it holds the applied
//     index and term its header names, and only then switches CURRENT
//     (write CURRENT.tmp, fsync, rename over CURRENT, fsync dir). A crash
//     before the rename is durable leaves the old state; after it, the new
//     one.
//   - Flush (and Close) make Pebble's state durable up to AppliedIndex; a
//     crash before loses only a suffix of whole batches.
//
// The tests run each of these (first Open, Restore, Apply+Flush) on
// internal/crashfs, take a crash image at every sync and rename point (only
// synced data, and torn: half the unsynced blocks too), reopen the store
// on each image, and check it against a model: for Restore exactly the old
// or exactly the new state; for Flush the model's state at the store's
// applied index, which is no lower than the last Flush that returned.
//
// # Snapshot archive format, version 3
//
// All integers big-endian; CRCs are CRC-32C (Castagnoli). Version 1 (no
// term) was never deployed; version 2 also carried the runtime's
// membership in its header, which the runtime now frames itself. Both are
// refused.
//
//	header  = "RPKVSNAP" | version u32 = 3 | applied index u64 | applied term u64 | crc u32
//	file    = kind u8 = 1 | name length u16 | name | size u64 | data | crc u32
//	end     = kind u8 = 2 | file count u32 | stream crc u32
//
// The header crc covers the header bytes before it; a file's crc covers its
// record from the kind byte through the data; the stream crc covers every
// byte of the stream before it, so a truncated, reordered or corrupted
// stream is caught. The files are those of a Pebble checkpoint, which is
// flat, sorted by name. The header is what ReadSnapshotInfo returns and
// what Restore checks the restored database against. Every length is
// checked against a limit (maxSnapNameBytes, maxSnapFileBytes,
// maxSnapFiles) before anything is allocated or written, and names must be
// plain file names.
//
// # Concurrency
//
// Apply, Flush, WriteSnapshot (its checkpoint part), Restore and Close are
// serialized by one mutex. Get, AppendValue, Hash, AppliedIndex,
// AppliedTerm may run at any time; reads hold a shared lock that
// Restore and Close take exclusively only for the moment they swap or close
// the database. AppliedIndex and AppliedTerm read outside the writers'
// goroutine may come from two different Apply calls; SnapshotInfo (from
// WriteSnapshot or Restore) is always a consistent triple.
// WriteSnapshot streams from a checkpoint of hard-linked, immutable files,
// so Apply goes on while a snapshot is sent.
//
// # Performance
//
// One Apply is one Pebble batch and one commit, without fsync. The batch is
// reused across calls, user keys are written into it with their prefix in
// place (SetDeferred), and results carry a value only for a CAS failure or a
// replicated get, so a batch of puts allocates nothing per entry.
//
// A CAS must see the writes of earlier entries in its own batch. Rather
// than an indexed Pebble batch (two iterator allocations per read, slower
// inserts), Apply keeps a small per-call Bloom filter of the keys it has
// written: a CAS whose key is not in it reads the database directly; on a
// hit it scans the batch's earlier entries backwards for the last write to
// that key. TestApplyMatchesModel checks this against a plain map.
//
// # Many groups on one engine
//
// A node that hosts many Raft groups opens one Engine and a Group view per
// group instead of one Store each. One Pebble database per group would
// give each its own memtables, WAL, block cache, background goroutines,
// manifest and open files (about 260 KiB of Go heap and 8 goroutines per
// Store, measured); a node with a thousand groups could not afford that.
// On an Engine the groups share all of it, and a group's view is a few
// hundred bytes (TestEngineMemoryPerGroup: about 320 B of Go heap per
// open idle group with a few keys, 1,000 groups), and an engine with 1,000
// idle groups used about 0.2% of a core (BenchmarkEngineIdleCPU).
//
//	e, _ := kv.OpenEngine(dir, kv.Options{DisableWAL: true})
//	g, _ := e.Group(id)                 // one view per group, ErrGroupOpen for a second
//	g.Apply(entries, results)           // one batch: the group's data and applied record
//	flushed, done, _ := g.FlushAsync()  // the engine's flush: every group durable
//	info, _ := g.WriteSnapshot(w)       // this group's span only
//	info, _ = g.Restore(r)              // replaces this group's span only, atomically
//	g.Close()                           // durable (a shared flush), view released
//	e.RemoveGroup(id)                   // a replica leaves the node: one excise of its span
//	e.Close()                           // one flush for every group, then the database
//
// A Group is an sm.StateMachine, one per Replica, and its operations mean
// what the Store's do. Membership belongs to the runtime and the WAL, so
// neither Apply nor the group archive carry any.
//
// Key layout inside the engine's database (part of the on-disk format; g
// is the group ID, 8 bytes big-endian, at most MaxGroupID):
//
//	key                                  value                          what
//	g | 0x00 | "applied"                 index u64 | term u64 (16 B)    the group's applied record
//	g | 0x01 | user key                  user value                     the group's data
//	0xFF x 8 | 0x00 | "format"           u32 = 1                        the engine's format record
//
// Every key of group g lies in [g, g+1), one contiguous span: a snapshot
// iterates it, a restore excises it, and no two groups' spans overlap (the
// byte after g is the same kind byte a Store uses behind no prefix). The
// applied record is inside the span, so it moves with the data in every
// batch, snapshot and restore. ID MaxGroupID+1 (eight 0xFF bytes) is the
// engine's own: it holds the format record (engineFormatVersion), written
// and made durable when the database is created, so that OpenEngine
// refuses a Store's database or another engine format (ErrOldFormat), and
// it gives the last group's span an upper bound of the same width.
//
// Engine directory:
//
//	dir/pebble/              the Pebble database of every group
//	dir/restore-N.tmp/       sstables a Restore is building (removed by OpenEngine)
//
// Restore is atomic per group without a CURRENT switch: it reads the whole
// archive into sstables in dir/restore-N.tmp (each synced, with the
// group's prefix and the header's applied record among the keys), checks
// the stream's CRC and counts, and only then calls Pebble's
// IngestAndExcise with the group's span as the excise span. Pebble links
// the tables into its directory, syncs it, and in one manifest edit
// (synced) both removes every key of the span that was there (turning
// overlapping tables into virtual ones that exclude the span) and adds the
// new tables. If the memtable holds keys of the span Pebble flushes it
// first; OpenEngine turns off ingesting as a flushable, which would keep
// the restored state in memory until a later flush, so the new state is
// durable when Restore returns. A crash before the manifest edit is
// durable leaves the group wholly old; after it, wholly new; other groups
// are never touched. An excise also removes the span's keys from open
// Pebble snapshots, so a Restore waits for a WriteSnapshot of the same
// group in progress to end.
//
// FlushAsync and Flush on any group flush the shared database, making
// every group durable up to the batches committed before the flush
// started; the flushed index returned is the calling group's. Groups that
// ask for a flush with nothing committed since the last flush started
// share that flush, so a thousand idle groups asking cost one. The rule of
// the WAL section holds per group: compact a group's Raft log only up to
// the index its FlushAsync returned, once done is closed.
//
// The tests run a group Restore (on an engine with unflushed batches in
// the restored group and a neighbour), interleaved batches of three groups
// with FlushAsync, a RemoveGroup, and the first OpenEngine on
// internal/crashfs with an image at every sync and rename point, and check
// each group against its model: the restored group wholly old or wholly
// new (and new at every point after Restore returned), a removed group
// wholly there or wholly gone, the others at a state they passed through;
// after flushes, each group at one of its batch ends no lower than the
// last completed flush covered.
//
// # Group snapshot archive format, version 1
//
// All integers big-endian; CRCs are CRC-32C. Keys are the group's user
// keys without any prefix, in strictly increasing byte order.
//
//	header = "RPKVGSNP" | version u32 = 1 | group u64 | applied index u64 |
//	         applied term u64 | crc u32
//	pair   = kind u8 = 1 | key length u32 | key | value length u32 | value
//	end    = kind u8 = 2 | pair count u64 | stream crc u32
//
// The header crc covers the header before it (ReadGroupSnapshotInfo checks
// it without reading further); the stream crc covers every byte before it.
// Pairs carry no CRC of their own: Restore installs nothing before the
// stream crc checks out. Restore refuses an archive of another group, a
// key over MaxKeyBytes, a value over MaxValueBytes, keys out of order and
// a count that does not match, with ErrBadSnapshot and the old state
// intact. WriteSnapshot streams from a Pebble snapshot (memtables
// included, so it flushes nothing) taken while the group's Apply is held
// off for that moment only.

package kv
