package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftpipe/raftpipe/wire"
)

// Entries returns the entries in [lo, hi), stopping before the total of
// len(Data) would exceed maxBytes but always returning at least one entry
// if lo < hi. Recent entries come from the cache; older ones are read from
// disk through the in-memory offset index. lo < FirstIndex() is
// ErrCompacted; hi > LastIndex()+1 is ErrUnavailable.
//
// The returned entries' Data is shared with the log: the caller must not
// modify it.
func (l *Log) Entries(lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	l.mu.Lock()
	return l.entriesLocked(l.mu.g0, lo, hi, maxBytes)
}

// entriesLocked is Entries for group g. REQUIRES: l.mu held; it unlocks it.
func (l *Log) entriesLocked(g *groupState, lo, hi, maxBytes uint64) ([]wire.Entry, error) {
	if lo <= g.markerIndex {
		first := g.markerIndex + 1
		l.mu.Unlock()
		return nil, fmt.Errorf("wal: entries from %d (first index %d): %w", lo, first, ErrCompacted)
	}
	if last := g.last(); hi > last+1 {
		l.mu.Unlock()
		return nil, fmt.Errorf("wal: entries up to %d (last index %d): %w", hi, last, ErrUnavailable)
	}
	if lo >= hi {
		l.mu.Unlock()
		return nil, nil
	}
	// Decide how many entries fit the byte budget.
	var total uint64
	end := lo
	cf := g.cacheFirst()
	for end < hi {
		var n uint64
		if end >= cf {
			n = uint64(len(g.cache[g.cacheHead+int(end-cf)].e.Data))
		} else {
			n = uint64(g.meta[g.metaPos(end)].dataLen())
		}
		if end > lo && total+n > maxBytes {
			break
		}
		total += n
		end++
	}
	out := make([]wire.Entry, 0, end-lo)
	// Cached part, copied out under the lock.
	var diskHi uint64 = end
	if cf < end {
		from := max(lo, cf)
		diskHi = from
		for i := from; i < end; i++ {
			out = append(out, g.cache[g.cacheHead+int(i-cf)].e)
		}
	}
	if lo >= diskHi {
		l.mu.Unlock()
		return out, nil
	}
	// Disk part: copy its metadata, then read without holding mu.
	metas := make([]entryMeta, diskHi-lo)
	copy(metas, g.meta[g.metaPos(lo):g.metaPos(lo)+len(metas)])
	l.mu.Unlock()

	disk, err := l.readEntries(lo, metas)
	if err != nil {
		return nil, err
	}
	return append(disk, out...), nil
}

// readEntries reads the entries lo, lo+1, ... located by metas from disk,
// one pread per run of entries in the same segment.
func (l *Log) readEntries(lo uint64, metas []entryMeta) ([]wire.Entry, error) {
	out := make([]wire.Entry, 0, len(metas))
	l.rd.RLock()
	defer l.rd.RUnlock()
	for i := 0; i < len(metas); {
		j := i + 1
		for j < len(metas) && metas[j].seq == metas[i].seq {
			j++
		}
		seq := uint64(metas[i].seq)
		f, err := l.readerLocked(seq)
		if err != nil {
			return nil, err
		}
		start := int64(metas[i].off)
		endOff := int64(metas[j-1].off) + int64(metas[j-1].size)
		buf := make([]byte, endOff-start)
		if _, err := f.ReadAt(buf, start); err != nil {
			return nil, fmt.Errorf("wal: read %s at %d: %w", segmentName(l.dir, seq), start, err)
		}
		for k := i; k < j; k++ {
			m := metas[k]
			rel := int64(m.off) - start
			r, n, st := decodeRecord(buf[rel : rel+int64(m.size)])
			idx := lo + uint64(k)
			if st != recOK || n != int(m.size) || r.typ != recEntry ||
				binary.LittleEndian.Uint64(r.payload) != idx {
				return nil, corruptf(segmentName(l.dir, seq), int64(m.off), "entry %d does not read back", idx)
			}
			out = append(out, wire.Entry{
				Index: idx,
				Term:  binary.LittleEndian.Uint64(r.payload[8:]),
				Type:  wire.EntryType(r.payload[16]),
				Data:  r.payload[entryPayloadHeaderBytes:len(r.payload):len(r.payload)],
			})
		}
		i = j
	}
	return out, nil
}

// readerLocked returns a read-only handle on segment seq, opening it on
// first use. REQUIRES: rd held shared. A segment removed by a compaction
// meanwhile reports ErrCompacted.
func (l *Log) readerLocked(seq uint64) (vfs.File, error) {
	l.rd.openMu.Lock()
	defer l.rd.openMu.Unlock()
	if f, ok := l.rd.files[seq]; ok {
		return f, nil
	}
	f, err := l.fs.Open(segmentName(l.dir, seq))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("wal: segment %d removed: %w", seq, ErrCompacted)
		}
		return nil, fmt.Errorf("wal: open segment for reading: %w", err)
	}
	l.rd.files[seq] = f
	return f, nil
}
