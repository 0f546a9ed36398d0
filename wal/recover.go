package wal

import (
	"encoding/binary"
	"fmt"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

// replayState is one group's log rebuilt from its records during recovery.
//
// Because old segments are removed once everything in them is dead for
// every group, the first remaining segment may start (header firstIndex F
// for group 0, the group-start record's index for the others) above its
// preamble's marker m: entries m+1..F-1 lived in removed segments. The
// replay then tracks a "hole" [markerIndex+1, start) that later records
// (the compaction or reset that made those segments dead) must close;
// a hole left at the end means a segment is missing.
type replayState struct {
	// id is the group.
	id uint64
	// fresh means no record of the group has been applied yet: a
	// group-start record then sets start instead of checking it.
	fresh                   bool
	markerIndex, markerTerm uint64
	// base is the marker's base bytes (a copy; nil if empty).
	base []byte
	// start is the index of meta[0]. Invariant: start >= markerIndex+1.
	start uint64
	meta  []entryMeta
	hs    wire.HardState
}

// dirReplay is the whole directory rebuilt during recovery: every group's
// replayState and the segments that remain.
type dirReplay struct {
	// groups lists the groups in the order they were first seen; group 0
	// is always first.
	groups []*replayState
	// byID indexes groups.
	byID map[uint64]*replayState
	// maxGroups is Options.MaxGroups; tooMany is set once a record of one
	// group more is seen.
	maxGroups int
	tooMany   error
	// segs are the segments that remain, in order.
	segs []uint64
}

// apply routes one record found at offset off of segment seq to its
// group's replay, creating the group on its first record. first says seq
// is the first remaining segment: only there may a group be first seen in
// a preamble (a group-start record), since every later preamble restates
// only groups that had written before it.
func (d *dirReplay) apply(r record, seq uint64, first bool, off int64, size int) string {
	s := d.byID[r.group]
	if s == nil {
		if len(d.groups) >= d.maxGroups {
			d.tooMany = fmt.Errorf("wal: the log holds more than Options.MaxGroups (%d) groups: %w", d.maxGroups, ErrTooManyGroups)
			return "too many groups"
		}
		if r.typ == recGroupStart && !first {
			return fmt.Sprintf("group %d first seen in the preamble of a later segment", r.group)
		}
		s = &replayState{id: r.group, fresh: true, start: 1}
		d.byID[r.group] = s
		d.groups = append(d.groups, s)
	}
	why := s.apply(r, seq, off, size)
	s.fresh = false
	return why
}

// last is the last index replayed so far.
func (s *replayState) last() uint64 { return s.start + uint64(len(s.meta)) - 1 }

// apply applies one record found at offset off of segment seq. It returns
// a reason string if the record breaks the log's invariants.
//
// The record's group is not checked: the caller routes records by group.
func (s *replayState) apply(r record, seq uint64, off int64, size int) string {
	p := r.payload
	switch r.typ {
	case recGroupStart:
		next := u64(p, 0)
		switch {
		case next == 0:
			return "group start at index 0"
		case s.fresh:
			s.start = next
		case next != s.last()+1:
			return fmt.Sprintf("group %d starts the segment at index %d, previous segments end at %d", s.id, next, s.last())
		}
	case recEntry:
		idx, term := u64(p, 0), u64(p, 1)
		if idx != s.last()+1 {
			return fmt.Sprintf("entry %d does not follow last index %d", idx, s.last())
		}
		if off > maxSegmentFileBytes || seq > 1<<32-1 {
			return "entry beyond the offset index's range"
		}
		s.meta = append(s.meta, entryMeta{term: term, seq: uint32(seq), off: uint32(off), size: uint32(size)})
	case recHardState:
		s.hs = wire.HardState{Term: u64(p, 0), Vote: u64(p, 1), Commit: u64(p, 2)}
	case recTruncate:
		from := u64(p, 0)
		if from <= s.markerIndex || from > s.last()+1 {
			return fmt.Sprintf("truncation from %d outside [%d, %d]", from, s.markerIndex+1, s.last()+1)
		}
		if from <= s.start {
			s.meta = s.meta[:0]
			s.start = from
		} else {
			s.meta = s.meta[:from-s.start]
		}
	case recCompact:
		idx, term := u64(p, 0), u64(p, 1)
		switch {
		case idx < s.markerIndex:
			return fmt.Sprintf("compaction to %d below marker %d", idx, s.markerIndex)
		case idx == s.markerIndex:
			// A segment preamble restating the current marker and base.
			s.markerTerm = term
			s.setBase(markerBase(p))
		case idx > s.last():
			return fmt.Sprintf("compaction to %d beyond last index %d", idx, s.last())
		case idx < s.start:
			// Inside the hole: the entries were in removed segments.
			s.markerIndex, s.markerTerm = idx, term
			s.setBase(markerBase(p))
		default:
			s.meta = s.meta[idx-s.start+1:]
			s.start = idx + 1
			s.markerIndex, s.markerTerm = idx, term
			s.setBase(markerBase(p))
		}
	case recReset:
		idx, term := u64(p, 0), u64(p, 1)
		if idx == 1<<64-1 {
			return "reset to the largest index"
		}
		s.meta = s.meta[:0]
		s.start = idx + 1
		s.markerIndex, s.markerTerm = idx, term
		s.setBase(markerBase(p))
	default:
		return fmt.Sprintf("unknown record type %d", r.typ)
	}
	return ""
}

// setBase records a marker's base. b aliases the segment buffer, which the
// next segment reuses, so it is copied (nil if empty).
func (s *replayState) setBase(b []byte) {
	if len(b) == 0 {
		s.base = nil
		return
	}
	s.base = append(s.base[:0:0], b...)
}

// scanSegment walks the records of one segment image. data is the whole
// file. It calls visit for each valid record and stops at the first
// record that is zeroed, torn or corrupt, at offset end:
//   - if everything from end on is zero, the segment simply ends there;
//   - otherwise, for a sealed segment (last=false), or a record whose CRC
//     holds but whose layout is illegal, it is corruption, reported as a
//     *CorruptError;
//   - otherwise (the last segment) see classifyTail: a torn tail
//     (torn=true: the caller cuts the file at end), or corruption.
//
// visit may return a reason to stop with corruption at that record.
// scanSegment checks the header; a bad header is corruption at offset 0
// (the caller handles a last segment whose header never made it to disk).
func scanSegment(name string, data []byte, last bool, visit func(r record, off int64, size int) string) (end int64, torn bool, err error) {
	if _, ok := decodeSegmentHeader(data); !ok {
		return 0, false, corruptf(name, 0, "bad segment header")
	}
	off := segmentHeaderBytes
	for off < len(data) {
		r, n, st := decodeRecord(data[off:])
		if st == recOK {
			if why := visit(r, int64(off), n); why != "" {
				return int64(off), false, corruptf(name, int64(off), "%s", why)
			}
			off += n
			continue
		}
		if allZero(data[off:]) {
			return int64(off), false, nil
		}
		if st == recInvalid {
			return int64(off), false, corruptf(name, int64(off), "record with a valid CRC but an illegal layout")
		}
		if !last {
			return int64(off), false, corruptf(name, int64(off), "bad record before the end of a sealed segment")
		}
		if next, ok := classifyTail(data, int64(off)); !ok {
			return int64(off), false, corruptf(name, int64(off), "bad record followed by a valid record at offset %d", next)
		}
		return int64(off), true, nil
	}
	return int64(off), false, nil
}

// sectorBytes is the disk sector size the torn-write rule assumes: a write
// that never reached the disk leaves whole sectors as they were (zeros, in
// the unwritten part of a segment). 512 bytes is the smallest sector in
// use, so the rule holds for 4 KiB sectors too.
const sectorBytes = 512

// classifyTail decides what the bad record at off of the last segment is,
// when non-zero bytes follow it. ok=true means a torn tail, to be cut:
//   - the record's header is all zero, or its claimed extent runs past the
//     non-zero data (or past EOF): it was not completely written;
//   - or one of the sectors its extent covers (aligned to file offsets) is
//     all zero from the record's start on: a block of an unsynced write
//     that never reached the disk, while later blocks did (out-of-order
//     persistence). In the record's first sector the bytes before it are
//     ignored: they belong to earlier records that were synced with the
//     old version of that block, so a lost block that starts a write is
//     zero only from the record on (TestCrashPoints found this: a record
//     with one byte in the last sector of a lost block);
//   - or no valid record follows it anywhere in the non-zero data: a
//     damaged last record, which nothing acknowledged depends on.
//
// ok=false means corruption: a valid record (plausible header, valid CRC)
// starts at next, after a bad record that shows no sign of a tear, so
// cutting there would silently drop valid records.
func classifyTail(data []byte, off int64) (next int64, ok bool) {
	nz := nonZeroEnd(data)
	if off+recordHeaderBytes > int64(len(data)) || allZero(data[off:off+recordHeaderBytes]) {
		return 0, true
	}
	extEnd := off + recordHeaderBytes + int64(binary.LittleEndian.Uint32(data[off+4:]))
	if extEnd > nz {
		return 0, true
	}
	for s := off &^ (sectorBytes - 1); s < extEnd; s += sectorBytes {
		if allZero(data[max(s, off):min(s+sectorBytes, int64(len(data)))]) {
			return 0, true
		}
	}
	if next, found := findValidRecord(data, off+1, nz); found {
		return next, false
	}
	return 0, true
}

// findValidRecord returns the offset of the first valid record that starts
// in [from, to) of data (it may end past to: a record's last bytes can be
// zeros). It is cheap on ordinary data: a candidate offset must first show
// a plausible header (a known type, zero reserved bytes, a legal length
// for the type that fits in data) before its CRC is computed. Any group
// ID is plausible: IDs are the caller's.
func findValidRecord(data []byte, from, to int64) (int64, bool) {
	for p := from; p < to && p+recordHeaderBytes <= int64(len(data)); p++ {
		h := data[p : p+recordHeaderBytes]
		t := recordType(h[8])
		if t == 0 || t >= recTypeMax || h[9]|h[10]|h[11] != 0 {
			continue
		}
		n := int64(binary.LittleEndian.Uint32(h[4:]))
		if !payloadSizePlausible(t, n) || p+recordHeaderBytes+n > int64(len(data)) {
			continue
		}
		if _, _, st := decodeRecord(data[p:]); st == recOK {
			return p, true
		}
	}
	return 0, false
}

// recoverDir replays every segment in dir. It cuts a torn tail off the
// last segment (durably) and removes a last segment whose header never
// reached the disk; everything else that is wrong is an error.
func recoverDir(fsys vfs.FS, dir string, log *slog.Logger, maxGroups int) (*dirReplay, error) {
	names, err := listDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var seqs []uint64
	for _, n := range names {
		if seq, ok := parseSegmentBase(n); ok {
			seqs = append(seqs, seq)
		}
		if n == preparedSegmentName {
			// Zero-filled for a roll that never came (the process died).
			// It is not log data whatever it holds; the preparer makes a
			// new one. No directory sync: if the removal is lost, the next
			// Open removes it again.
			log.Info("wal: removing unused prepared segment", "file", n)
			if err := fsys.Remove(filepath.Join(dir, n)); err != nil {
				return nil, fmt.Errorf("wal: remove unused prepared segment: %w", err)
			}
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return nil, corruptf(segmentName(dir, seqs[i]), 0, "segment %d is missing", seqs[i-1]+1)
		}
	}
	st := &replayState{start: 1}
	d := &dirReplay{groups: []*replayState{st}, byID: map[uint64]*replayState{0: st}, maxGroups: maxGroups}
	var buf []byte
	for i, seq := range seqs {
		name := segmentName(dir, seq)
		last := i == len(seqs)-1
		data, err := readWhole(fsys, name, &buf)
		if err != nil {
			return nil, err
		}
		h, ok := decodeSegmentHeader(data)
		if !ok && last {
			// Created, but the crash came before its first write (which
			// carries the header) was durable: nothing in it was ever
			// acknowledged. The torn-tail rule, applied to the header.
			log.Warn("wal: removing last segment with a missing or torn header", "file", name)
			if err := fsys.Remove(name); err != nil {
				return nil, fmt.Errorf("wal: remove empty segment: %w", err)
			}
			if err := vfsutil.SyncDir(fsys, dir); err != nil {
				return nil, fmt.Errorf("wal: sync dir: %w", err)
			}
			break
		}
		if ok && h.seq != seq {
			return nil, corruptf(name, 0, "header says segment %d", h.seq)
		}
		if ok {
			if i == 0 {
				st.start = h.firstIndex
				if h.firstIndex == 0 {
					return nil, corruptf(name, 0, "first index 0")
				}
			} else if h.firstIndex != st.last()+1 {
				return nil, corruptf(name, 0, "segment starts at index %d, previous segments end at %d", h.firstIndex, st.last())
			}
		}
		end, torn, err := scanSegment(name, data, last, func(r record, off int64, size int) string {
			return d.apply(r, seq, i == 0, off, size)
		})
		if d.tooMany != nil {
			return nil, d.tooMany
		}
		if err != nil {
			return nil, err
		}
		d.segs = append(d.segs, seq)
		if torn {
			log.Warn("wal: cutting torn tail of last segment", "file", name, "offset", end, "size", len(data))
			if err := cutTail(fsys, name, data, end); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range d.groups {
		if g.start != g.markerIndex+1 {
			return nil, corruptf(segmentName(dir, seqs[0]), 0, "group %d: entries %d..%d missing: a segment was lost", g.id, g.markerIndex+1, g.start-1)
		}
		// Defence in depth: batches put their hard state after their
		// entries and a preamble restates only a hard state whose entries
		// precede it durably, so this should never fire; but the Raft core
		// cannot start with a commit beyond its last index, and the
		// entries above the last index are not there to commit.
		if last := g.last(); g.hs.Commit > last {
			log.Warn("wal: recovered hard state commits beyond the last index; clamping", "group", g.id, "commit", g.hs.Commit, "last_index", last)
			g.hs.Commit = last
		}
	}
	return d, nil
}

// readWhole reads a segment file into *buf (reused across segments) after
// checking its size against maxSegmentFileBytes.
func readWhole(fsys vfs.FS, name string, buf *[]byte) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: stat %s: %w", name, err)
	}
	// A segment may be shorter than SegmentBytes: Preallocate need not
	// change the size (vfs.Default keeps it, MemFS does nothing), so a
	// fallocated segment is as long as what was written to it.
	size := fi.Size()
	if size > maxSegmentFileBytes+maxRecordPayloadBytes {
		return nil, corruptf(name, 0, "file size %d above the limit", size)
	}
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	data := (*buf)[:size]
	if n, err := f.ReadAt(data, 0); err != nil && !(err == io.EOF && int64(n) == size) {
		return nil, fmt.Errorf("wal: read %s: %w", name, err)
	}
	return data, nil
}

// cutTailChunkBytes bounds the zero buffer cutTail writes from.
const cutTailChunkBytes = 64 << 10

// cutTail cuts a torn tail off the last segment, whose whole image is data:
// it overwrites data[end:] with zeros up to the end of the non-zero bytes
// and syncs, so that the segment reads as cleanly ending at end from now on.
// vfs.File has no Truncate, and zeros serve as well: a recovered segment is
// never written again, and zeros read as the end of the log. A crash during
// the cut leaves a prefix of the zeroing, which the next recovery cuts again.
func cutTail(fsys vfs.FS, name string, data []byte, end int64) error {
	nz := nonZeroEnd(data)
	if nz <= end {
		return nil
	}
	f, err := fsys.OpenReadWrite(name, writeCategory)
	if err != nil {
		return fmt.Errorf("wal: open %s to cut its tail: %w", name, err)
	}
	zeros := make([]byte, min(nz-end, cutTailChunkBytes))
	for off := end; off < nz; {
		p := zeros[:min(int64(len(zeros)), nz-off)]
		n, err := f.WriteAt(p, off)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: zero %s at %d: %w", name, off, err)
		}
		off += int64(n)
	}
	if err := f.SyncData(); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync %s after cutting: %w", name, err)
	}
	return f.Close()
}

// nonZeroEnd is one past the last non-zero byte of b (0 if b is all zero).
func nonZeroEnd(b []byte) int64 {
	i := len(b)
	for i >= 8 && binary.LittleEndian.Uint64(b[i-8:]) == 0 {
		i -= 8
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}
