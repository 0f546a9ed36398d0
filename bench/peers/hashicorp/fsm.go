package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Command layout: op(1) | key length(2, big endian) | key | value.
// cmdPut is the op byte of a put, the only command.
const cmdPut byte = 1

const (
	// cmdHeaderLen (op and key length) is untyped: it is used as an int.
	cmdHeaderLen = 3
	// maxKeyBytes bounds a key in a command and in a snapshot record.
	maxKeyBytes = 1 << 16
	// maxSnapValueBytes bounds one value read back from a snapshot.
	maxSnapValueBytes = 64 << 20
)

// errBadCommand is returned (as the Apply response) for a malformed command.
var errBadCommand = errors.New("hashicorp peer: malformed command")

// encodePut builds a put command. It allocates: raft keeps cmd in its log
// and the driver reuses key and value after Do returns.
func encodePut(key, value []byte) []byte {
	if len(key) >= maxKeyBytes {
		panic("hashicorp peer: key longer than maxKeyBytes")
	}
	cmd := make([]byte, cmdHeaderLen+len(key)+len(value))
	cmd[0] = cmdPut
	binary.BigEndian.PutUint16(cmd[1:3], uint16(len(key)))
	copy(cmd[cmdHeaderLen:], key)
	copy(cmd[cmdHeaderLen+len(key):], value)
	return cmd
}

// kvFSM is the in-memory key-value state machine.
type kvFSM struct {
	mu struct {
		sync.Mutex
		// data is the replicated map; values alias the log entry's bytes,
		// which raft does not reuse.
		data map[string][]byte
	}
}

func newKVFSM() *kvFSM {
	f := &kvFSM{}
	f.mu.data = map[string][]byte{}
	return f
}

// Apply implements raft.FSM.
func (f *kvFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	d := l.Data
	if len(d) < cmdHeaderLen || d[0] != cmdPut {
		return errBadCommand
	}
	kl := int(binary.BigEndian.Uint16(d[1:3]))
	if len(d) < cmdHeaderLen+kl {
		return errBadCommand
	}
	key := string(d[cmdHeaderLen : cmdHeaderLen+kl])
	f.mu.Lock()
	f.mu.data[key] = d[cmdHeaderLen+kl:]
	f.mu.Unlock()
	return nil
}

// Snapshot implements raft.FSM: it copies the map (values are immutable).
func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := make(map[string][]byte, len(f.mu.data))
	for k, v := range f.mu.data {
		cp[k] = v
	}
	return kvSnapshot(cp), nil
}

// Restore implements raft.FSM, reading what kvSnapshot.Persist wrote:
// repeated key length(4) | key | value length(4) | value.
func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	data := map[string][]byte{}
	var hdr [4]byte
	readBlob := func(limit uint32) ([]byte, error) {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > limit {
			return nil, fmt.Errorf("hashicorp peer: snapshot record of %d bytes over %d", n, limit)
		}
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		return b, err
	}
	for {
		k, err := readBlob(maxKeyBytes)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("hashicorp peer: restore key: %w", err)
		}
		v, err := readBlob(maxSnapValueBytes)
		if err != nil {
			return fmt.Errorf("hashicorp peer: restore value: %w", err)
		}
		data[string(k)] = v
	}
	f.mu.Lock()
	f.mu.data = data
	f.mu.Unlock()
	return nil
}

// kvSnapshot is a point-in-time copy of the map.
type kvSnapshot map[string][]byte

// Persist implements raft.FSMSnapshot.
func (s kvSnapshot) Persist(sink raft.SnapshotSink) error {
	bw := bufio.NewWriter(sink)
	var hdr [4]byte
	for k, v := range s {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(k)))
		bw.Write(hdr[:])
		bw.WriteString(k)
		binary.BigEndian.PutUint32(hdr[:], uint32(len(v)))
		bw.Write(hdr[:])
		bw.Write(v)
	}
	if err := bw.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (kvSnapshot) Release() {}
