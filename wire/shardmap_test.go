package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestGroupOfIsStable pins GroupOf's answers: they decide which group holds
// a key's data, so they must never change between builds.
func TestGroupOfIsStable(t *testing.T) {
	cases := []struct {
		key    string
		groups uint32
		want   uint32
	}{
		{"", 16, 0},
		{"a", 1, 0},
		{"a", 0, 0},
		{"a", 2, 1},
		{"a", 16, 8},
		{"b", 16, 6},
		{"user/00000001", 16, 5},
		{"user/00000002", 16, 7},
		{"user/00000003", 16, 13},
		{"bench-key", 3, 0},
		{"bench-key", 256, 29},
		{"bench-key", MaxShardGroups, 7620},
	}
	for _, c := range cases {
		if got := GroupOf([]byte(c.key), c.groups); got != c.want {
			t.Errorf("GroupOf(%q, %d) = %d, want %d: the key-to-group function is part of the data layout and must not change",
				c.key, c.groups, got, c.want)
		}
	}
}

// TestGroupOfMatchesSpec recomputes GroupOf from the standard library's
// FNV-1a and the steps in its doc, so the doc is a usable spec.
func TestGroupOfMatchesSpec(t *testing.T) {
	for i := range 1000 {
		key := []byte(fmt.Sprintf("k%d/%s", i, strings.Repeat("x", i%40)))
		f := fnv.New64a()
		f.Write(key)
		h := f.Sum64()
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
		for _, g := range []uint32{2, 3, 16, 1000, MaxShardGroups} {
			// (h * g) >> 64 computed as 32x32 partial products.
			hi := (h>>32)*uint64(g) + ((h&0xffffffff)*uint64(g))>>32
			if want := uint32(hi >> 32); GroupOf(key, g) != want {
				t.Fatalf("GroupOf(%q, %d) = %d, spec says %d", key, g, GroupOf(key, g), want)
			}
		}
	}
}

// TestGroupOfSpread checks that sequential keys, the pattern plain FNV-1a
// handles worst, spread evenly: each of 16 groups gets within 10% of its
// share of 64k keys.
func TestGroupOfSpread(t *testing.T) {
	const groups, keys = 16, 1 << 16
	var counts [groups]int
	for i := range keys {
		counts[GroupOf([]byte(fmt.Sprintf("user/%08d", i)), groups)]++
	}
	for g, n := range counts {
		if share := keys / groups; n < share*9/10 || n > share*11/10 {
			t.Errorf("group %d got %d of %d sequential keys, want about %d", g, n, keys, share)
		}
	}
}

func TestShardMapRoundTrip(t *testing.T) {
	big := ShardMap{Groups: MaxShardGroups, Leaders: make([]string, MaxShardGroups)}
	for g := range big.Leaders {
		if g%7 != 0 {
			big.Leaders[g] = fmt.Sprintf("10.0.%d.%d:8000", g%5, g%3)
		}
	}
	manyAddrs := ShardMap{Groups: MaxShardAddrs, Leaders: make([]string, MaxShardAddrs)}
	for g := range manyAddrs.Leaders {
		p := fmt.Sprintf("h%d:", g)
		manyAddrs.Leaders[g] = p + strings.Repeat("9", MaxShardAddrBytes-len(p))
	}
	for name, m := range map[string]ShardMap{
		"sample":         sampleShardMap(),
		"one-unknown":    {Groups: 1, Leaders: []string{""}},
		"one-known":      {Groups: 1, Leaders: []string{"127.0.0.1:1"}},
		"all-unknown":    {Groups: 5, Leaders: make([]string, 5)},
		"max-groups":     big,
		"max-addrs-long": manyAddrs,
	} {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			b, err := AppendShardMap(bytes.Clone(prefix), &m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[:len(prefix)], prefix) {
				t.Fatal("AppendShardMap clobbered dst")
			}
			var got ShardMap
			if err := DecodeShardMap(b[len(prefix):], &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip changed the map: got %d groups, want %d", got.Groups, m.Groups)
			}
		})
	}
}

func TestShardMapEncodeRefuses(t *testing.T) {
	tooMany := ShardMap{Groups: MaxShardAddrs + 1, Leaders: make([]string, MaxShardAddrs+1)}
	for g := range tooMany.Leaders {
		tooMany.Leaders[g] = fmt.Sprintf("h%d:1", g)
	}
	for name, m := range map[string]ShardMap{
		"zero-groups":    {},
		"over-max":       {Groups: MaxShardGroups + 1, Leaders: make([]string, MaxShardGroups+1)},
		"short-leaders":  {Groups: 3, Leaders: []string{"a:1"}},
		"long-leaders":   {Groups: 1, Leaders: []string{"a:1", "b:1"}},
		"long-address":   {Groups: 1, Leaders: []string{strings.Repeat("a", MaxShardAddrBytes+1)}},
		"too-many-addrs": tooMany,
	} {
		dst := []byte("keep")
		out, err := AppendShardMap(dst, &m)
		if !errors.Is(err, ErrCorrupt) || !bytes.Equal(out, dst) {
			t.Errorf("%s: got %v and %d bytes, want ErrCorrupt and dst unchanged", name, err, len(out))
		}
	}
}

// shardMapBytes hand-assembles an encoding: version, groups, the address
// table, then the leader indexes.
func shardMapBytes(version uint8, groups uint32, addrs []string, idx []uint32) []byte {
	b := []byte{version}
	b = binary.LittleEndian.AppendUint32(b, groups)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(addrs)))
	for _, a := range addrs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(a)))
		b = append(b, a...)
	}
	for _, i := range idx {
		b = binary.LittleEndian.AppendUint32(b, i)
	}
	return b
}

func TestShardMapDecodeErrors(t *testing.T) {
	ok := shardMapBytes(1, 3, []string{"a:1", "b:1"}, []uint32{1, 2, 1})
	var m ShardMap
	if err := DecodeShardMap(ok, &m); err != nil || !reflect.DeepEqual(m, ShardMap{Groups: 3, Leaders: []string{"a:1", "b:1", "a:1"}}) {
		t.Fatalf("hand-made map: %v %+v", err, m)
	}
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"empty":            {nil, ErrCorrupt},
		"version":          {shardMapBytes(2, 1, nil, []uint32{0}), ErrVersion},
		"zero-groups":      {shardMapBytes(1, 0, nil, nil), ErrCorrupt},
		"over-max-groups":  {shardMapBytes(1, MaxShardGroups+1, nil, nil), ErrCorrupt},
		"huge-addr-count":  {shardMapBytes(1, 1, nil, nil)[:5], ErrCorrupt},
		"short-indexes":    {shardMapBytes(1, 3, []string{"a:1"}, []uint32{1, 1}), ErrCorrupt},
		"trailing":         {append(bytes.Clone(ok), 0), ErrCorrupt},
		"index-past-table": {shardMapBytes(1, 2, []string{"a:1"}, []uint32{1, 2}), ErrCorrupt},
		"out-of-order":     {shardMapBytes(1, 2, []string{"a:1", "b:1"}, []uint32{2, 1}), ErrCorrupt},
		"unused-address":   {shardMapBytes(1, 2, []string{"a:1", "b:1"}, []uint32{1, 0}), ErrCorrupt},
		"duplicate":        {shardMapBytes(1, 2, []string{"a:1", "a:1"}, []uint32{1, 2}), ErrCorrupt},
		"empty-address":    {shardMapBytes(1, 1, []string{""}, []uint32{1}), ErrCorrupt},
		"long-address":     {shardMapBytes(1, 1, []string{strings.Repeat("a", MaxShardAddrBytes+1)}, []uint32{1}), ErrCorrupt},
		"truncated-addr":   {shardMapBytes(1, 1, []string{"a:1"}, []uint32{1})[:12], ErrCorrupt},
	}
	// A count of addresses above the limit, with bytes enough to hold them.
	over := shardMapBytes(1, 1, nil, []uint32{0})
	binary.LittleEndian.PutUint32(over[5:], MaxShardAddrs+1)
	over = append(over, make([]byte, 5*(MaxShardAddrs+1))...)
	cases["over-max-addrs"] = struct {
		b    []byte
		want error
	}{over, ErrCorrupt}
	for name, c := range cases {
		m := ShardMap{Groups: 9}
		err := DecodeShardMap(c.b, &m)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
		if m.Groups != 0 || m.Leaders != nil {
			t.Errorf("%s: failed decode left %+v, want the zero map", name, m)
		}
	}
}

// TestGoldenShardMap pins the ShardMap encoding: old clients decode what
// new nodes send.
func TestGoldenShardMap(t *testing.T) {
	m := sampleShardMap()
	b, err := AppendShardMap(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", "ShardMap.hex")
	if *update {
		if err := os.WriteFile(path, []byte(formatHex("ShardMap", b, 0)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	want := parseHex(t, string(raw))
	if !bytes.Equal(b, want) {
		t.Fatalf("ShardMap encoding changed; bump ShardMapFormatVersion and keep decoding the old one.\n got %x\nwant %x", b, want)
	}
	var got ShardMap
	if err := DecodeShardMap(want, &got); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("golden ShardMap: %v, got %+v want %+v", err, got, m)
	}
}

func FuzzDecodeShardMap(f *testing.F) {
	m := sampleShardMap()
	b, _ := AppendShardMap(nil, &m)
	f.Add(b)
	b, _ = AppendShardMap(nil, &ShardMap{Groups: 1, Leaders: []string{""}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m ShardMap
		err := DecodeShardMap(b, &m)
		mustBeTyped(t, "DecodeShardMap", err)
		if err != nil {
			return
		}
		if m.Groups == 0 || m.Groups > MaxShardGroups || len(m.Leaders) != int(m.Groups) {
			t.Fatalf("decoded map breaks its limits: %d groups, %d leaders", m.Groups, len(m.Leaders))
		}
		re, err := AppendShardMap(nil, &m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("decode then encode changed the bytes:\n in %x\nout %x", b, re)
		}
	})
}

func BenchmarkGroupOf(b *testing.B) {
	key := []byte("user/00001234")
	b.ReportAllocs()
	b.SetBytes(int64(len(key)))
	var sink uint32
	for b.Loop() {
		sink += GroupOf(key, 16)
	}
	_ = sink
}
