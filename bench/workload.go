package bench

import (
	"encoding/binary"
	"math/rand/v2"
)

// opGen fills one worker's reusable Op: key choice, read/write mix and
// payload bytes. Owned by its worker goroutine; no locks, no allocation per
// op after construction.
type opGen struct {
	// rng is the worker's own seeded source, so runs are reproducible and
	// workers never contend on a shared source.
	rng *rand.Rand
	// zipf draws key numbers when the distribution is zipfian; nil otherwise.
	zipf *rand.Zipf
	// keys is the key-space size.
	keys uint64
	// writeFraction is the probability an op is a write.
	writeFraction float64
	// stale marks reads as stale reads.
	stale bool
	// keyBuf and valBuf back op.Key and op.Value for the worker's lifetime.
	keyBuf [keyBytes]byte
	valBuf []byte
	// seq is stamped into the first bytes of each value so consecutive
	// writes of one worker differ (defeats value-level dedup) while the
	// rest stays random (incompressible, like a fair payload).
	seq uint64
}

// newOpGen builds the generator for worker number worker.
func newOpGen(cfg *Config, worker int) *opGen {
	g := &opGen{
		rng:           rand.New(rand.NewPCG(cfg.Seed, uint64(worker)+1)),
		keys:          uint64(max(cfg.Keys, 1)),
		writeFraction: cfg.WriteFraction,
		stale:         cfg.StaleReads,
		valBuf:        make([]byte, cfg.PayloadBytes),
	}
	if cfg.Distribution == DistZipfian && g.keys > 1 {
		g.zipf = rand.NewZipf(g.rng, zipfS, 1, g.keys-1)
	}
	for i := range g.valBuf {
		g.valBuf[i] = byte(g.rng.Uint32())
	}
	return g
}

// next fills op with the next request.
func (g *opGen) next(op *Op) {
	var k uint64
	if g.zipf != nil {
		k = g.zipf.Uint64()
	} else {
		k = g.rng.Uint64N(g.keys)
	}
	putKey(&g.keyBuf, k)
	op.Key = g.keyBuf[:]
	op.Write = g.writeFraction >= 1 || (g.writeFraction > 0 && g.rng.Float64() < g.writeFraction)
	if op.Write {
		g.seq++
		if len(g.valBuf) >= 8 {
			binary.LittleEndian.PutUint64(g.valBuf, g.seq)
		}
		op.Value = g.valBuf
		op.Stale = false
	} else {
		op.Value = nil
		op.Stale = g.stale
	}
}

// putKey writes key number k as "k" followed by 15 lowercase hex digits.
func putKey(buf *[keyBytes]byte, k uint64) {
	const hex = "0123456789abcdef"
	buf[0] = 'k'
	for i := keyBytes - 1; i >= 1; i-- {
		buf[i] = hex[k&0xf]
		k >>= 4
	}
}
