package wire

import (
	"fmt"
	"math/bits"
)

// Key routing: which Raft group owns a key. Nodes and clients of every build
// must agree on it byte for byte, and a key's group decides where its data
// lives, so GroupOf is part of the data layout: it never changes. (A new
// function would strand every stored key in the wrong group.) The values it
// returns for a set of sample keys are pinned by TestGroupOfIsStable.
const (
	// fnvOffset64 and fnvPrime64 are the 64-bit FNV-1a parameters.
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// GroupOf returns the group, in [0, groups), that owns key. The empty key
// belongs to group 0 (so does every key when groups is 0 or 1).
//
// The function, for implementers in other languages:
//
//	h = FNV-1a 64 of key (offset 14695981039346656037, prime 1099511628211)
//	h ^= h >> 33; h *= 0xff51afd7ed558ccd          (MurmurHash3's fmix64)
//	h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53
//	h ^= h >> 33
//	group = (h * groups) >> 64                     (high word of the 128-bit product)
//
// FNV-1a alone is cheap and stable but mixes poorly: bit k of its output
// depends only on bits 0..k of the input bytes, and its high bits barely
// move when only the last byte changes, so sequential keys ("user/0001",
// "user/0002") would crowd into few groups under either a modulo or a
// multiply-shift reduction. The fmix64 finalizer makes every output bit
// depend on every input bit. The multiply-shift reduction avoids a
// division and is biased by at most groups/2^64, which is nothing. CRC32C
// was the alternative (hardware-accelerated), but it is linear, so
// structured key sets can map unevenly, and its call overhead exceeds the
// FNV loop for the short keys that dominate. About 1 ns per key byte.
func GroupOf(key []byte, groups uint32) uint32 {
	if groups <= 1 || len(key) == 0 {
		return 0
	}
	h := uint64(fnvOffset64)
	for _, b := range key {
		h ^= uint64(b)
		h *= fnvPrime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(groups))
	return uint32(hi)
}

// ShardMapFormatVersion is the first byte of an encoded ShardMap. The map
// travels inside a ClientResponse's Value, so it can grow (say, member
// lists per group) under its own version without a new ProtocolVersion; a
// client that meets an unknown version routes as if there were one group
// and lets StatusNotLeader hints steer it.
const ShardMapFormatVersion uint8 = 1

// Limits on an encoded ShardMap, part of the format. They bound what one
// OpShardMap answer can make a client allocate and keep per group, and so
// also the size of the answer (about 790 KiB at most, well under
// DefaultMaxFrameBytes).
const (
	// MaxShardGroups bounds ShardMap.Groups. A client keeps a few words of
	// routing state per group, so 65536 groups cost it about 2 MiB; that is
	// far beyond the thousand or so groups per host the runtime targets, and
	// a count in the billions from a bad node cannot become a huge
	// allocation.
	MaxShardGroups = 1 << 16
	// MaxShardAddrs bounds the distinct leader addresses in one map: there
	// is one per node that leads some group, and groups have 3 or 5
	// members, so 1024 leaves room for large clusters.
	MaxShardAddrs = 1024
	// MaxShardAddrBytes bounds one leader address. A DNS name is at most
	// 253 bytes; with a port (and brackets for IPv6) an address fits in 262,
	// and 512 leaves margin.
	MaxShardAddrBytes = 512
)

// shardMapFixedBytes is the fixed part of an encoded ShardMap: format
// version u8, Groups u32, address count u32.
const shardMapFixedBytes = 1 + 4 + 4

// AppendShardMap appends the encoding of m to dst. This is the Value of a
// StatusOK answer to OpShardMap, not a frame. Layout (little-endian):
//
//	+----------+---------+---------+-- naddrs x --+--- Groups x ---+
//	| fmt u8=1 | Groups  | naddrs  | bytes(addr)  | leader u32     |
//	|          | u32     | u32     |              |                |
//	+----------+---------+---------+--------------+----------------+
//
// The distinct non-empty leader addresses are listed once each, in the
// order of their first use; then, per group, 0 for "unknown" or i for
// addrs[i-1]. (Writing the address per group was the simpler layout; with
// thousands of groups on 3 to 5 nodes it repeats each address thousands of
// times, and the decoder would allocate a string per group.)
//
// It returns an error wrapping ErrCorrupt, and dst unchanged, if m breaks a
// rule the decoder checks: 1 <= Groups <= MaxShardGroups, len(Leaders) ==
// Groups, addresses at most MaxShardAddrBytes, at most MaxShardAddrs
// distinct ones.
func AppendShardMap(dst []byte, m *ShardMap) ([]byte, error) {
	if m.Groups == 0 || m.Groups > MaxShardGroups {
		return dst, fmt.Errorf("wire: encoding ShardMap: %w: %d groups, want 1 to %d", ErrCorrupt, m.Groups, MaxShardGroups)
	}
	if uint64(len(m.Leaders)) != uint64(m.Groups) {
		return dst, fmt.Errorf("wire: encoding ShardMap: %w: %d leaders for %d groups", ErrCorrupt, len(m.Leaders), m.Groups)
	}
	index := make(map[string]uint32)
	var addrs []string
	size := shardMapFixedBytes + 4*len(m.Leaders)
	for _, a := range m.Leaders {
		if a == "" {
			continue
		}
		if _, ok := index[a]; ok {
			continue
		}
		if len(a) > MaxShardAddrBytes {
			return dst, fmt.Errorf("wire: encoding ShardMap: %w: address of %d bytes, limit %d", ErrCorrupt, len(a), MaxShardAddrBytes)
		}
		if len(addrs) == MaxShardAddrs {
			return dst, fmt.Errorf("wire: encoding ShardMap: %w: more than %d distinct addresses", ErrCorrupt, MaxShardAddrs)
		}
		addrs = append(addrs, a)
		index[a] = uint32(len(addrs))
		size += bytesPrefixBytes + len(a)
	}
	start := len(dst)
	dst = grow(dst, size)
	b := dst[start:]
	b = putU8(b, ShardMapFormatVersion)
	b = putU32(b, m.Groups)
	b = putU32(b, uint32(len(addrs)))
	for _, a := range addrs {
		b = putU32(b, uint32(len(a)))
		b = b[copy(b, a):]
	}
	for _, a := range m.Leaders {
		b = putU32(b, index[a]) // "" is not in index: 0
	}
	finishEncode(b, "ShardMap")
	return dst, nil
}

// DecodeShardMap decodes an encoded ShardMap into m. The strings are fresh
// allocations (one per distinct address, shared by the groups it leads),
// so m does not alias b. It returns ErrVersion for an unknown format
// version and ErrCorrupt for anything AppendShardMap would not produce:
// limits exceeded, an index past the address list, an empty, duplicate or
// unused address, or addresses out of first-use order. Rejecting those
// keeps the encoding canonical, so one map has exactly one encoding.
func DecodeShardMap(b []byte, m *ShardMap) error {
	*m = ShardMap{}
	if len(b) > 0 && b[0] != ShardMapFormatVersion {
		return fmt.Errorf("wire: decoding ShardMap: %w: format version %d, this build reads %d", ErrVersion, b[0], ShardMapFormatVersion)
	}
	d := decoder{b: b}
	d.u8()
	groups := d.u32()
	if d.err == nil && (groups == 0 || groups > MaxShardGroups) {
		d.fail("%d groups, want 1 to %d", groups, MaxShardGroups)
	}
	naddrs := d.count(bytesPrefixBytes+1, "addresses")
	if naddrs > MaxShardAddrs {
		d.fail("%d addresses, limit %d", naddrs, MaxShardAddrs)
	}
	if d.err != nil {
		return d.finish("ShardMap")
	}
	addrs := make([]string, naddrs)
	seen := make(map[string]struct{}, naddrs)
	for i := range addrs {
		a := d.bytes()
		if d.err != nil {
			break
		}
		if len(a) == 0 || len(a) > MaxShardAddrBytes {
			d.fail("address %d is %d bytes, want 1 to %d", i, len(a), MaxShardAddrBytes)
			break
		}
		if _, dup := seen[string(a)]; dup {
			d.fail("address %q listed twice", a)
			break
		}
		addrs[i] = string(a)
		seen[addrs[i]] = struct{}{}
	}
	if d.err == nil && uint64(len(d.b)) != 4*uint64(groups) {
		d.fail("%d groups need %d bytes of leader indexes, %d remain", groups, 4*uint64(groups), len(d.b))
	}
	if d.err != nil {
		return d.finish("ShardMap")
	}
	leaders := make([]string, groups)
	used := uint32(0) // addresses referenced so far; the next new one must be addrs[used]
	for g := range leaders {
		i := d.u32()
		switch {
		case i == 0:
		case i <= used:
			leaders[g] = addrs[i-1]
		case i == used+1 && int(i) <= len(addrs):
			used++
			leaders[g] = addrs[i-1]
		default:
			d.fail("group %d names address %d; %d of %d listed are in use, in order", g, i, used, len(addrs))
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && int(used) != len(addrs) {
		d.fail("%d addresses listed, %d used", len(addrs), used)
	}
	if err := d.finish("ShardMap"); err != nil {
		return err
	}
	m.Groups, m.Leaders = groups, leaders
	return nil
}
