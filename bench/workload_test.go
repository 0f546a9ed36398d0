package bench

import (
	"bytes"
	"errors"
	"flag"
	"testing"
	"time"
)

func TestPutKey(t *testing.T) {
	var b [keyBytes]byte
	putKey(&b, 0xabc)
	if got := string(b[:]); got != "k000000000000abc" {
		t.Fatalf("key %q", got)
	}
}

func TestOpGenMixAndDeterminism(t *testing.T) {
	cfg, _ := Config{Keys: 100, WriteFraction: 0.25, StaleReads: true, PayloadBytes: 32, Seed: 1}.withDefaults()
	g1, g2 := newOpGen(&cfg, 3), newOpGen(&cfg, 3)
	var op1, op2 Op
	writes := 0
	const n = 4000
	for i := 0; i < n; i++ {
		g1.next(&op1)
		g2.next(&op2)
		if op1.Write != op2.Write || !bytes.Equal(op1.Key, op2.Key) || !bytes.Equal(op1.Value, op2.Value) {
			t.Fatal("same seed and worker gave different ops")
		}
		if op1.Write {
			writes++
			if len(op1.Value) != 32 || op1.Stale {
				t.Fatalf("write with %d-byte value, stale %v", len(op1.Value), op1.Stale)
			}
		} else if op1.Value != nil || !op1.Stale {
			t.Fatalf("read with value or not stale: %+v", op1)
		}
	}
	// 1000 expected; 5 standard deviations is about ±137.
	if writes < 850 || writes > 1150 {
		t.Fatalf("%d writes of %d at fraction 0.25", writes, n)
	}
	readsOnly, err := Config{WriteFraction: 0}.withDefaults()
	if err != nil || readsOnly.WriteFraction != 0 {
		t.Fatalf("a zero write fraction must stay 0 (reads only), got %v, %v", readsOnly.WriteFraction, err)
	}
	g := newOpGen(&readsOnly, 0)
	var op Op
	for i := 0; i < 1000; i++ {
		g.next(&op)
		if op.Write {
			t.Fatal("write fraction 0 produced a write")
		}
	}
	if _, err := (Config{WriteFraction: -1}).withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative write fraction: %v, want ErrInvalidConfig", err)
	}
}

func TestZipfianSkewsWithinRange(t *testing.T) {
	cfg, err := Config{Keys: 1000, Distribution: DistZipfian, Seed: 9}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	g := newOpGen(&cfg, 0)
	var op Op
	hot := 0
	for i := 0; i < 10000; i++ {
		g.next(&op)
		if string(op.Key[:1]) != "k" {
			t.Fatalf("key %q", op.Key)
		}
		var k uint64
		for _, c := range op.Key[1:] {
			k = k*16 + uint64(bytes.IndexByte([]byte("0123456789abcdef"), c))
		}
		if k >= 1000 {
			t.Fatalf("key number %d outside 0..999", k)
		}
		if k < 10 {
			hot++
		}
	}
	// Uniform would put 1% on the first 10 keys; zipf(1.1) puts far more.
	if hot < 2000 {
		t.Fatalf("only %d of 10000 ops on the 10 hottest keys: not skewed", hot)
	}
}

func TestMeasureFdatasync(t *testing.T) {
	res, err := MeasureFdatasync(t.TempDir(), 20, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if res.Syncs != 20 || res.P50Us <= 0 || res.P50Us > res.P99Us || res.P99Us > res.MaxUs {
		t.Fatalf("result %+v", res)
	}
	if _, err := MeasureFdatasync(t.TempDir(), 0, 4096); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("n=0: %v", err)
	}
}

func TestRegisterFlags(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterFlags(fs, &cfg)
	if err := fs.Parse([]string{"-clients", "8", "-rate", "500", "-dist", "zipfian", "-warmup", "0s", "-write-fraction", "0.5"}); err != nil {
		t.Fatal(err)
	}
	got, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Clients != 8 || got.RateOpsPerSec != 500 || got.Distribution != DistZipfian || got.Warmup != 0 ||
		got.WriteFraction != 0.5 || got.Inflight != 1 || got.PayloadBytes != 128 || got.Duration != 10*time.Second {
		t.Fatalf("parsed config %+v", got)
	}
}
