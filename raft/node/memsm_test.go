package node

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/sm"
	"github.com/raftpipe/raftpipe/wire"
)

// memSM is the second sm.StateMachine, the one that proves the seam: a
// plain map applied from kv commands (puts, deletes and no-ops; anything
// else is a bad request), made durable by rewriting one file. It shares
// nothing with raft/kv but the command encoding, which the client
// protocol fixes. Its whole state fits in memory and every flush writes
// all of it, so it is for tests only.
//
// Durability follows sm's contract: Apply changes memory only; FlushAsync
// writes the state to memsm.tmp, syncs it and renames it over memsm (then
// syncs the directory) before it returns, so after a crash the state is
// that of some flush no older than the last one that completed. Restore
// writes its state the same way before it returns.
type memSM struct {
	fs   vfs.FS
	dir  string
	path string
	// mu guards everything below; one lock is plenty for a test.
	mu          sync.Mutex
	data        map[string]string
	index, term uint64
}

var _ sm.StateMachine = (*memSM)(nil)

// memSMMagic starts a memSM file and snapshot: magic | index u64 | term u64
// | count u32 | (len u32 key len u32 value)... | crc u32 (CRC-32C of all
// before it).
const memSMMagic = "MEMSM001"

// openMemSM is a Config.OpenStateMachine: the state lives in
// dataDir/memsm.
func openMemSM(fs vfs.FS, dataDir string) (sm.StateMachine, error) {
	dir := fs.PathJoin(dataDir, "memsm")
	if err := vfsutil.MkdirAllDurable(fs, dir); err != nil {
		return nil, err
	}
	s := &memSM{fs: fs, dir: dir, path: fs.PathJoin(dir, "state"), data: map[string]string{}}
	f, err := fs.Open(s.path)
	if oserror.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := s.decode(f); err != nil {
		return nil, fmt.Errorf("memsm: %s: %w", s.path, err)
	}
	return s, nil
}

func (s *memSM) Apply(ents []wire.Entry, results []sm.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var req wire.ClientRequest
	for i := range ents {
		e := &ents[i]
		if e.Index <= s.index {
			results[i] = sm.Result{Status: wire.StatusUnknown}
			continue
		}
		if e.Index != s.index+1 {
			panic(fmt.Sprintf("memsm: entry %d after %d", e.Index, s.index))
		}
		s.index, s.term = e.Index, e.Term
		results[i] = sm.Result{Status: wire.StatusOK}
		if e.Type != wire.EntryNormal || len(e.Data) == 0 {
			continue
		}
		if kv.DecodeCommand(e.Data, &req) != nil {
			results[i].Status = wire.StatusBadRequest
			continue
		}
		switch req.Op {
		case wire.OpPut:
			s.data[string(req.Key)] = string(req.Value)
		case wire.OpDelete:
			delete(s.data, string(req.Key))
		case wire.OpNoop:
		default:
			results[i].Status = wire.StatusBadRequest
		}
	}
	return nil
}

func (s *memSM) Lookup(key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[string(key)]
	if !ok {
		return nil, false, nil
	}
	return []byte(v), true, nil
}

func (s *memSM) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

func (s *memSM) FlushAsync() (uint64, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.persistLocked(); err != nil {
		return 0, nil, err
	}
	done := make(chan struct{})
	close(done)
	return s.index, done, nil
}

func (s *memSM) WriteSnapshot(w io.Writer) (sm.SnapshotInfo, error) {
	s.mu.Lock()
	b := s.encodeLocked()
	info := sm.SnapshotInfo{Index: s.index, Term: s.term}
	s.mu.Unlock()
	_, err := w.Write(b)
	return info, err
}

func (s *memSM) Restore(r io.Reader) (sm.SnapshotInfo, error) {
	next := &memSM{data: map[string]string{}}
	if err := next.decode(r); err != nil {
		return sm.SnapshotInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.index, s.term = next.data, next.index, next.term
	return sm.SnapshotInfo{Index: s.index, Term: s.term}, s.persistLocked()
}

func (s *memSM) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persistLocked()
}

// persistLocked replaces the file with the current state, atomically.
func (s *memSM) persistLocked() error {
	tmp := s.path + ".tmp"
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(s.encodeLocked())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, s.path)
	}
	if err == nil {
		err = vfsutil.SyncDir(s.fs, s.dir)
	}
	return err
}

func (s *memSM) encodeLocked() []byte {
	b := append([]byte(nil), memSMMagic...)
	b = binary.BigEndian.AppendUint64(b, s.index)
	b = binary.BigEndian.AppendUint64(b, s.term)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.data)))
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(s.data[k])))
		b = append(b, s.data[k]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decode reads an encoded state into s (not yet shared).
func (s *memSM) decode(r io.Reader) error {
	b, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return err
	}
	bad := errors.New("memsm: malformed state")
	if len(b) < len(memSMMagic)+24 || !bytes.HasPrefix(b, []byte(memSMMagic)) {
		return bad
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("%w: crc mismatch", bad)
	}
	p := body[len(memSMMagic):]
	s.index, s.term = binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
	n := binary.BigEndian.Uint32(p[16:])
	p = p[20:]
	str := func() (string, bool) {
		if len(p) < 4 || uint64(binary.BigEndian.Uint32(p)) > uint64(len(p)-4) {
			return "", false
		}
		l := binary.BigEndian.Uint32(p)
		v := string(p[4 : 4+l])
		p = p[4+l:]
		return v, true
	}
	for range n {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return bad
		}
		s.data[k] = v
	}
	if len(p) != 0 {
		return bad
	}
	return nil
}
