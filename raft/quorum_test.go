package raft

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// committedIndexSimple is the definition, deliberately naive: the largest v
// among the acked values such that a majority acked at least v.
func committedIndexSimple(voters []uint64, acked map[uint64]uint64) uint64 {
	if len(voters) == 0 {
		return 0
	}
	var best uint64
	for _, cand := range voters {
		v := acked[cand]
		n := 0
		for _, id := range voters {
			if acked[id] >= v {
				n++
			}
		}
		if n >= len(voters)/2+1 && v > best {
			best = v
		}
	}
	return best
}

func TestCommittedIndexMatchesDefinition(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		n := rnd.IntN(20) // includes > maxFastVoters
		voters := make([]uint64, n)
		acked := map[uint64]uint64{}
		for i := range voters {
			voters[i] = uint64(i + 1)
			// Small ranges produce many ties.
			acked[voters[i]] = rnd.Uint64N(uint64(1 + rnd.IntN(12)))
		}
		got := committedIndex(voters, func(id uint64) uint64 { return acked[id] })
		want := committedIndexSimple(voters, acked)
		if got != want {
			t.Fatalf("voters %v acked %v: got %d, want %d", voters, acked, got, want)
		}
	}
}

func TestVoteResult(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 5000; iter++ {
		n := 1 + rnd.IntN(7)
		voters := make([]uint64, n)
		votes := map[uint64]bool{}
		granted, rejected := 0, 0
		for i := range voters {
			voters[i] = uint64(i + 1)
			switch rnd.IntN(3) {
			case 0:
				votes[voters[i]] = true
				granted++
			case 1:
				votes[voters[i]] = false
				rejected++
			}
		}
		votes[99] = true // a non-voter's vote never counts
		want := VotePending
		if granted > n/2 {
			want = VoteWon
		} else if rejected >= n-n/2 {
			want = VoteLost
		}
		if got := voteResult(voters, votes); got != want {
			t.Fatalf("voters %v votes %v: got %v want %v", voters, votes, got, want)
		}
	}
	if voteResult(nil, nil) != VoteLost {
		t.Fatal("an empty configuration must not elect anyone")
	}
}

// BenchmarkCommittedIndex guards the zero-allocation commit arithmetic.
func BenchmarkCommittedIndex(b *testing.B) {
	voters := []uint64{1, 2, 3, 4, 5}
	acked := []uint64{0, 10, 7, 12, 9, 3}
	b.ReportAllocs()
	var sink uint64
	for i := 0; i < b.N; i++ {
		sink += committedIndex(voters, func(id uint64) uint64 { return acked[id] })
	}
	if sink == 0 {
		b.Fatal("unexpected")
	}
	_ = slices.Max(acked)
}
