package chaos

import (
	"fmt"
	"testing"

	"github.com/anishathalye/porcupine"
)

// benchEcho pushes 1 MiB per iteration through addr and back. The proxy
// sits on every peer link of a chaos test, so its cost per byte bounds
// how hard such a test can drive a cluster.
func benchEcho(b *testing.B, addr string) {
	c := dial(b, addr)
	data := randomBytes(1<<20, 11)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		pump(b, c, data, 11)
	}
}

// BenchmarkEchoDirect is the baseline: no proxy.
func BenchmarkEchoDirect(b *testing.B) {
	benchEcho(b, newEchoServer(b).addr())
}

// BenchmarkEchoProxyPass measures a proxy with no faults set: the ratio to
// BenchmarkEchoDirect is the harness's overhead.
func BenchmarkEchoProxyPass(b *testing.B) {
	srv := newEchoServer(b)
	p := newTestProxy(b, ProxyConfig{Target: srv.addr()})
	benchEcho(b, p.Addr())
}

// BenchmarkCheck measures checking a history of 4 clients doing 1000
// put/get pairs over 8 keys, with overlapping operations.
func BenchmarkCheck(b *testing.B) {
	h := NewHistory()
	const clients = 4
	for i := range 1000 {
		k := fmt.Sprintf("k%d", i%8)
		c := i % clients
		w := h.Invoke(c, put(k, fmt.Sprint(i)))
		r := h.Invoke(c+clients, get(k))
		h.Return(w, ack)
		h.Return(r, found(fmt.Sprint(i)))
	}
	ops := h.Operations()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res, err := CheckOperations(ops, CheckConfig{}); res != porcupine.Ok {
			b.Fatalf("check = %v, %v", res, err)
		}
	}
}
