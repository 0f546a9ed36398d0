package raft

import "testing"

func TestInflightsCountLimit(t *testing.T) {
	in := newInflights(3, 0)
	for i := uint64(1); i <= 3; i++ {
		if in.full() {
			t.Fatalf("full after %d", i-1)
		}
		in.add(i*10, 100)
	}
	if !in.full() {
		t.Fatal("not full at the message limit")
	}
	in.freeLE(15) // frees 10 only
	if in.len() != 2 || in.full() {
		t.Fatalf("after freeLE(15): len %d full %v", in.len(), in.full())
	}
	// Wrap around the ring.
	in.add(40, 100)
	in.freeLE(35)
	if in.len() != 1 || in.bytes != 100 {
		t.Fatalf("after wrap: len %d bytes %d", in.len(), in.bytes)
	}
	in.freeFirstOne()
	if in.len() != 0 || in.bytes != 0 {
		t.Fatalf("after freeFirstOne: len %d bytes %d", in.len(), in.bytes)
	}
}

func TestInflightsByteLimit(t *testing.T) {
	in := newInflights(100, 250)
	in.add(1, 100)
	in.add(2, 100)
	if in.full() {
		t.Fatal("full below the byte limit")
	}
	in.add(3, 100)
	if !in.full() {
		t.Fatal("not full at 300 of 250 bytes")
	}
	in.reset()
	if in.full() || in.len() != 0 {
		t.Fatal("reset did not empty the ring")
	}
}

func TestInflightsRejectsOutOfOrder(t *testing.T) {
	in := newInflights(4, 0)
	in.add(5, 1)
	defer func() {
		if recover() == nil {
			t.Fatal("adding a non-increasing index must panic")
		}
	}()
	in.add(5, 1)
}
