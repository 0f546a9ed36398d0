// Package wal is raftpipe's write-ahead log: a segmented, zero-filled,
// CRC-checked log of Raft entries and hard state with group commit and
// crash recovery. It is the Raft core's storage on each node.
//
// # Using it
//
//	l, err := wal.Open(dir, wal.Options{})         // recovers whatever is there
//	l.AppendAsync(entries, &hs, func(err error) {}) // view updated now; callback once durable
//	l.Entries(lo, hi, maxBytes)                     // cache first, else disk via the offset index
//	l.Term(i)                                       // from memory; i = FirstIndex()-1 gives the marker term
//	l.CompactPrefix(snapIndex, base)                // after a snapshot; old segments go
//	l.Reset(snapIndex, snapTerm, base)              // follower installed a snapshot beyond its log
//	l.Base()                                        // the base bytes given with the marker
//	g := l.Group(7)                                 // group 7's view: the same methods, its own log
//	g.AppendAsync(entries, &hs, done)               // shares the writer and the fsync with every group
//
// The in-memory view (FirstIndex, LastIndex, Term, Entries, HardState)
// reflects every call as soon as it returns; durability is reported by the
// completion callback (or by the return of Append, TruncateSuffix,
// CompactPrefix, Reset). The Raft runtime may therefore send entries to
// followers before its own disk has them, and count itself in the quorum
// only when the callback fires.
//
// # Groups
//
// One log holds the entries and hard state of many Raft groups (a host's
// replicas), each identified by a 64-bit ID chosen by the caller. The
// Log's own methods act on group 0; Log.Group(id) returns a *Group with
// the same methods (AppendAsync, Append, Entries, Term, FirstIndex,
// LastIndex, HardState, Base, CompactPrefix, Reset, TruncateSuffix) and
// the same contract, applied to that group alone: its entries, hard state,
// marker and base, truncations and resets are its own, and a group never
// sees another's entries. What the groups share is the writer: one round
// writes the batches of every group queued during the previous fsync in
// one write per segment touched and makes them durable with one fsync,
// so fsyncs per second do not grow with the number of groups (Stats.Calls
// per Stats.Syncs does instead).
//
// No call creates a group. A group that never recorded anything reads as
// empty (FirstIndex 1, LastIndex 0, zero hard state, nil base) and costs
// nothing; its first write that records something (an append with entries
// or a hard state, or a Reset) creates it, in memory at once and on disk
// once that write is durable. Groups are never deleted. Options.MaxGroups
// (default DefaultMaxGroups, 4096; at most MaxGroupsLimit, 65536) bounds
// how many exist: a write that would create one more fails with
// ErrTooManyGroups and changes nothing, and Open fails with it on a
// directory that holds more. The recent-entry cache budget (CacheBytes)
// is shared by all groups.
//
// Recovery, compaction and snapshots are per group. A segment is removed
// only when no group needs it: for every group, everything it wrote in
// the segment is dead (below its marker, truncated or reset), i.e. the
// group's first live entry lies in a later segment or it has none. The
// removal runs after a CompactPrefix or Reset of any group, so a group
// that lags in compacting keeps the segments from its first live entry on
// for all groups. What a removed segment held besides entries (hard
// states, markers, bases) is restated by every later segment's preamble.
//
// # Group commit
//
// Callers encode their records into one shared pending buffer under a
// mutex (the CPU work of encoding and CRC is spread over the callers) and
// register a waiter. One writer goroutine owns the active segment file. Each
// round it swaps out the whole pending buffer, writes it (one WriteAt per
// segment touched), issues one fdatasync, and fires every waiter of the
// round. Whatever callers queue while that sync runs becomes the next
// round. No lock is held across a write or sync; waiters are kept in
// reused slices and synchronous callers use pooled channels, so the sync
// path allocates nothing per waiter. Options.MaxBatchBytes bounds the
// pending buffer: callers block while it is full (backpressure).
//
// The first write or sync error is sticky: the writer fails that round's
// waiters and every later one with it, and never writes again (it also
// stops the segment preparer before it fails them). fsync
// errors are not retryable (the kernel may have dropped the dirty pages).
//
// # Files
//
// Every disk operation goes through Options.FS, a Pebble vfs.FS (nil:
// vfs.Default, the operating system's); tests hand in in-memory, crashable
// or fault-injecting ones. Segment syncs are File.SyncData (fdatasync on
// Linux). Open creates the directory if needed and syncs its parent, so a
// power loss cannot take the new directory itself.
//
// The directory holds segment files named by a 20-digit decimal sequence
// number and ".wal" (00000000000000000001.wal, ...), a file LOCK that Open
// locks (vfs.FS.Lock: on vfs.Default an fcntl write lock, so a second
// process cannot open the same log, plus a check that refuses a second
// Open of the same path in this process), and at most one prepared
// segment, next-segment.prep (below). Segments are never replaced: vfs
// Create and Rename overwrite, so the log checks that the name is free
// first. Other files are
// ignored. A batch that does not fit in the rest of the active segment
// starts the next one. The directory is fsynced after a segment is created,
// renamed into place or removed. Before a new segment is created the
// previous one is fully synced, so only the last segment can have a torn
// tail.
//
// # Segment lifecycle
//
// A prepared segment file has its full size (SegmentBytes) from the start,
// so that records are written inside the file and fdatasync never has to
// grow it. (A fallocated one does not: vfs.Default's Preallocate keeps the
// size, so its fdatasyncs also carry the size change, beside the extent
// conversion they pay anyway; on MemFS Preallocate does nothing. Recovery
// therefore accepts segments shorter than SegmentBytes.) Best is a file
// whose blocks were already written with zeros: an fdatasync after writing
// into it flushes data only. A file that is merely
// fallocated holds "unwritten" extents, and the first write into each block
// forces an extent conversion, i.e. a journal commit, into that fdatasync
// (on ext4, 4 KiB records: ~120-150 µs per fdatasync instead of ~75-90).
// Hence:
//
//  1. prepare: a background goroutine creates next-segment.prep,
//     fallocates it, writes zeros over all of it in 1 MiB chunks and syncs
//     it (every 8 MiB and at the end). It holds at most one such file.
//     While a segment is being written it is paced: it may be at most
//     2 MiB + 2 × (bytes written to the active segment) along, so its I/O
//     is spread over the first half of the active segment's life rather
//     than landing in one burst beside the writer's fdatasyncs.
//  2. roll: the writer syncs and closes the active segment, renames the
//     prepared file to the next segment's name, syncs the directory and
//     writes the header and preamble. If no prepared file is ready (the
//     first roll after Open, a preparation that failed, rolls faster than
//     the disk zero-fills, or a record bigger than SegmentBytes), it does
//     not wait: it creates and fallocates the segment as before, and asks
//     for a new preparation. Stats counts both kinds.
//  3. fill: records are written in place; the zeros after the last record
//     read as the end of the log.
//  4. remove: once everything in a segment is dead for every group
//     (CompactPrefix, Reset) it is deleted.
//
// next-segment.prep is never log data: its name is not a segment name, so
// recovery does not read it; Open deletes one a crash left behind, and
// Close deletes an unused one. A crash between the rename and the
// directory sync leaves either the prepared name (deleted at Open) or a
// last segment whose header is zero (removed at Open, as for a fallocated
// one). Zero-filling writes every segment's bytes twice; removed segments
// are not recycled, because records carry no segment number and a reused
// file's stale records could replay as log data unless it was zeroed again.
//
// # The base
//
// CompactPrefix and Reset take a base: opaque bytes (at most maxBaseBytes,
// 1 MiB; more is ErrBaseTooLarge) that describe the state at the new
// marker FirstIndex()-1, such as the membership there, which the runtime
// cannot rebuild from entries that are gone. The log stores them in the
// same record as the marker, so marker and base become durable together
// (no side file, no window between the two), and Base() returns them. A
// no-op CompactPrefix (upTo <= FirstIndex()-1) ignores its base. An empty
// base reads back as nil. Each group has its own base; all groups' bases
// together are bounded by maxTotalBaseBytes (16 MiB; more is
// ErrBaseTooLarge), because every preamble restates all of them.
//
// # Byte format, version 3 (formatVersion)
//
// Version 3 added many groups: records of any group ID, the group-start
// record, and a preamble that restates every group. Version 2 added the
// base to compact and reset records. Older logs are not readable (nothing
// was deployed with them): their segment header fails the version check,
// which Open reports as corruption.
//
// All integers are little-endian. CRCs are CRC-32C (Castagnoli).
//
//	segment file:
//	+----------------------+----------+----------+-----+----------+--------------+
//	| segment header (32)  | record 0 | record 1 | ... | record n | zeros to EOF |
//	+----------------------+----------+----------+-----+----------+--------------+
//
//	segment header (segmentHeaderBytes = 32):
//	 0       4         6          8            16                  24         28       32
//	 +-------+---------+----------+------------+-------------------+----------+--------+
//	 | magic | version | reserved |    seq     |    first index    | reserved | crc32c |
//	 | u32   | u16 = 2 | u16 = 0  |    u64     |        u64        | u32 = 0  | of 0:28|
//	 +-------+---------+----------+------------+-------------------+----------+--------+
//	 magic = segmentMagic ("RPWL"); first index = group 0's LastIndex()+1 when
//	 the segment began.
//
//	record (recordHeaderBytes = 20 + payload):
//	 0        4        8      9          12          20
//	 +--------+--------+------+----------+-----------+----------------+
//	 | crc32c | length | type | reserved | group ID  | payload        |
//	 | u32    | u32    | u8   | 3 × 0    | u64       | length bytes   |
//	 +--------+--------+------+----------+-----------+----------------+
//	 crc32c covers bytes 4 .. 20+length (everything after the CRC itself).
//	 length <= maxRecordPayloadBytes (256 MiB); checked before any use.
//	 group ID is the Raft group the record belongs to (any uint64).
//
//	payloads by type (recordType):
//	 1 entry       index u64 | term u64 | entry type u8 | data (length-17 bytes)
//	 2 hard state  term u64 | vote u64 | commit u64
//	 3 truncate    from u64             drop entries >= from
//	 4 compact     marker               entries <= index are covered by a snapshot
//	 5 reset       marker               drop all entries; next index is index+1
//	 6 group start next u64             preamble only: the group's LastIndex()+1
//	                                    when the segment began (groups other than 0)
//
//	marker payload (compact, reset; markerFixedBytes = 20 + base length):
//	 0          8          16            20
//	 +----------+----------+-------------+---------------------+
//	 |  index   |   term   | base length | base bytes          |
//	 |  u64     |   u64    | u32         | base length bytes   |
//	 +----------+----------+-------------+---------------------+
//	 base length <= maxBaseBytes (1 MiB), and the payload is exactly
//	 20 + base length bytes; anything else read from disk is corruption.
//
// Type 0 is never written: an all-zero record header means "nothing was
// written here" (the zero-filled or preallocated tail).
//
// Every segment begins, right after its header, with a preamble that
// restates every group that exists, group 0 first, then in creation order:
//
//	group 0:        [compact: marker, base][hard state]
//	each group g:   [group start: next][compact: marker, base][hard state]   (all with group ID g)
//
// Group 0's next index is the header's first index. Hence a segment plus
// the ones after it hold everything needed to rebuild every group, and
// older segments can be removed once all their entries are dead for every
// group (see "Groups"). Hard state, truncations and markers live in the
// same record stream as the entries (no side file), so one write and one
// fsync carry them all, for all groups. Records of different groups
// interleave freely; each group's records are in its own call order.
//
// The preamble's size is bounded: a group other than 0 costs
// groupPreambleFixedBytes (112) plus its base, group 0 costs 84 plus its
// base, and all bases together are at most 16 MiB. With 1,000 groups and
// small bases (a membership of a few dozen bytes) that is about 150 KiB
// per 64 MiB segment; at the limits (MaxGroupsLimit groups, 16 MiB of
// bases) about 23 MiB. A segment is made large enough for its preamble
// and the record that rolled it. Rolling costs O(groups) under the log's
// mutex, once per segment.
//
// # Recovery
//
// Open replays the segments in order, rebuilding for every group the
// marker, its base, the hard state and an in-memory offset index (term,
// segment, offset, size per live entry; 24 bytes each). Records are routed
// by group ID; a group's first record creates it. Only in the first
// remaining segment may a group be first seen through a group-start
// record (which then gives the index its entries continue at, as the
// header does for group 0); in any later segment a group-start record
// must restate exactly the group's LastIndex()+1, like the header's first
// index for group 0, else it is corruption. Every check below holds per
// group. At the first record at offset off of
// segment s that is zeroed, torn or fails its CRC:
//   - if the rest of s is all zeros, s ends there (normal);
//   - else if s is sealed (not the last segment), it is corruption: Open
//     fails with a *CorruptError (wrapping ErrCorrupt) naming the file and
//     offset. Records are never skipped. The same holds, in any segment,
//     for a record whose CRC holds but whose layout is illegal (e.g. a base
//     length over maxBaseBytes): those are the bytes that were written;
//   - else (the last segment) if the record shows a tear, it is a torn
//     tail, cut and logged: its header is all zero; or it is incomplete
//     (its claimed extent runs past the last non-zero byte or past EOF); or
//     one of the 512-byte sectors its extent covers, aligned to file
//     offsets, is all zero from the record's start on (a block of an
//     unsynced write that never reached the disk while later ones did: the
//     unwritten part of a segment is zeros). Bytes of the record's first
//     sector before the record are ignored, since they can belong to
//     earlier records synced with the old version of that block;
//   - else, if a valid record (a plausible header first, then its CRC)
//     starts anywhere in the non-zero data after off, it is corruption, as
//     above: cutting would silently drop valid records;
//   - else (a damaged last record, nothing valid after it) it is a torn
//     tail, cut.
//
// Cutting overwrites the bytes from off to the last non-zero byte with
// zeros and syncs (vfs.File has no Truncate; zeros read as the end of the
// log, and a recovered segment is never written again). A crash during the
// cut leaves part of the zeroing, which the next Open cuts again.
//
// The rule's known limits: a bit flip in a record that itself contains an
// all-zero sector (an entry of zeros, say), or in a length field so that
// the record claims an extent past the data, reads as torn, and the valid
// records after it in the last segment are dropped without an error. At
// worst a record that starts in the last few bytes of a sector reads as
// torn if those bytes happen to be zero (about 1 in 256 for one byte).
//
// Recovery also clamps a recovered HardState.Commit to the last recovered
// index, logging a warning. The log's own ordering never needs it (a
// batch's hard state follows its entries, and a preamble only restates a
// hard state whose entries are durable before it), but the Raft core could
// not start otherwise. Recovered Commit <= LastIndex always.
//
// A last segment whose header is zeroed or torn (created, but the crash
// came before its first write was durable) is removed. As with any torn
// tail, recovery cannot tell this from later damage to the last segment;
// damage anywhere else is reported, never repaired. Segment sequence numbers
// must be consecutive, each segment's first index (and group-start
// records) must continue the previous segment, each group's record indexes
// must be contiguous, and each group's entries from its marker on must be
// present (a gap means a lost segment); anything else is corruption. Each
// recovered group is therefore always a prefix of what was appended to it,
// and it contains every batch whose completion fired. More groups than
// Options.MaxGroups fail Open with ErrTooManyGroups (not corruption).
//
// After Open, new records always go to a fresh segment: a recovered
// segment is never written again.
//
// # Batch layout
//
// One AppendAsync call encodes [truncate][entries...][hard state]: the
// hard state comes last, so a torn batch that keeps it keeps all of the
// batch's entries too.
//
// # Ownership
//
// AppendAsync copies entry data (one allocation per call), so the caller
// may reuse its buffers once it returns. Entries returns entries whose Data
// is shared with the log's cache or read buffer: do not modify it.
//
// # Known limits
//
// Segments are removed only after a CompactPrefix or Reset: a truncation
// that leaves a group with no live entries frees segments only at the
// next compaction or reset of any group. One group that never compacts
// keeps every segment from its first live entry on.
//
// A segment is made large enough for its preamble and the record that
// rolled it; if the preamble takes more than half of SegmentBytes (many
// groups with large bases and small segments), the segment is made twice
// the preamble's size so that records get as much room as the restated
// state, and it is fallocated rather than prepared. Keep SegmentBytes
// well above groups × 112 bytes plus all bases.
//
// The candidate filter of the search for a valid record after a bad one
// cannot use the group ID (any ID is legal), so it has one check less
// than in version 2; the CRC still decides.
//
// Looking for a valid record after a bad one in the last segment costs a
// CRC per candidate offset with a plausible header; ordinary data has few,
// but data crafted to be full of plausible headers makes it quadratic in
// the segment's size (once, at Open, for a damaged last segment).
//
// Zero-filling pays off for records of about a block or more; for small
// records (~150 bytes) one extent conversion is shared by the ~25 records
// of a block, so fallocated and zero-filled segments sync about equally
// fast and the zeros are only extra disk writes. If the kernel evicts a
// prepared segment's clean pages before the writer reaches them, a record
// that covers part of a page makes the kernel read that page first.
package wal
