package transport

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftpipe/raftpipe/wire"
)

// BenchmarkTransport pushes MsgApp messages one way through a real loopback
// link between two transports, pipelined: the sender never waits for the
// receiver except when the queue is full (then it retries; drops are not
// counted as delivered). The timer stops only after the receiver's Handler
// has seen all b.N messages. Entry data is random (incompressible) and the
// link uses the default wire options (no compression). Bytes/op counts entry
// data only, so MB/s compares directly with BenchmarkRawTCP.
func BenchmarkTransport(b *testing.B) {
	for _, bc := range []struct{ entries, size int }{{64, 128}, {16, 4096}} {
		b.Run(fmt.Sprintf("entries=%d/size=%d", bc.entries, bc.size), func(b *testing.B) {
			benchTransport(b, bc.entries, bc.size)
		})
	}
}

func benchTransport(b *testing.B, entries, size int) {
	var received atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	recv := newNode(b, testConfig(2, func(*wire.Message) {
		if received.Add(1) == target {
			close(done)
		}
	}))
	send := newNode(b, testConfig(1, func(*wire.Message) {}))
	connect(b, send, recv)

	data := make([]byte, entries*size)
	rand.Read(data)
	ents := make([]wire.Entry, entries)
	for i := range ents {
		ents[i] = wire.Entry{Term: 1, Index: uint64(i + 1), Data: data[i*size : (i+1)*size]}
	}
	m := wire.Message{Type: wire.MsgApp, From: 1, To: 2, Term: 1, Entries: ents}

	b.SetBytes(int64(entries * size))
	b.ReportAllocs()
	cpu := startCPUClock(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Index = uint64(i)
		for !send.Send(&m) {
			// Queue full. Spinning here would steal the CPU the writer and
			// reader need (2 cores), so back off a little.
			time.Sleep(20 * time.Microsecond)
		}
	}
	<-done
	b.StopTimer()
	cpu.report()
	b.ReportMetric(float64(b.N*entries)/b.Elapsed().Seconds(), "entries/s")
	if st := send.PeerStats(2); st.Reconnects != 0 {
		b.Fatalf("link reconnected during the benchmark: %+v", st)
	}
}

// BenchmarkRawTCP writes the same entry bytes per op as
// BenchmarkTransport/entries=16/size=4096 (16 x 4096) through a plain
// loopback net.Conn, one Write per op, to a reader that discards them: the
// ceiling the transport's MB/s is measured against.
func BenchmarkRawTCP(b *testing.B) {
	b.Run("size=4096", func(b *testing.B) {
		const perOp = 16 * 4096
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			_, err = io.CopyN(io.Discard, c, int64(b.N)*perOp)
			done <- err
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, perOp)
		rand.Read(buf)
		b.SetBytes(perOp)
		b.ReportAllocs()
		cpu := startCPUClock(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu.report()
		b.ReportMetric(float64(b.N*16)/b.Elapsed().Seconds(), "entries/s")
	})
}

// cpuClock measures the CPU time (user + system, all threads: sender,
// writer, reader, GC) the process spends during a benchmark. On a shared
// machine wall-clock MB/s depends on what other processes do; CPU time per
// op much less so, which makes "cpu-ns/op" the steadier way to compare the
// transport's cost with raw TCP's.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

func startCPUClock(b *testing.B) cpuClock { return cpuClock{b: b, start: processCPU(b)} }

// report adds the cpu-ns/op metric.
func (c cpuClock) report() {
	used := processCPU(c.b) - c.start
	c.b.ReportMetric(float64(used.Nanoseconds())/float64(c.b.N), "cpu-ns/op")
}

// processCPU returns the process's user + system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
