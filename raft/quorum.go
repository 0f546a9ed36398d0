package raft

// quorum.go holds the pure majority arithmetic the leader uses for commit,
// for ReadIndex rounds and for vote tallies. It knows nothing about logs or
// messages so it can be tested against a brute-force definition.

// maxFastVoters is how many voters committedIndex sorts on the stack; larger
// configurations fall back to a heap slice. Raft groups are 3, 5 or 7 voters
// in practice.
const maxFastVoters = 16

// majority is the smallest number of voters that forms a quorum of n.
func majority(n int) int { return n/2 + 1 }

// committedIndex returns the largest value v such that a majority of voters
// have acked(id) >= v. With no voters it returns 0 (nothing can commit).
//
// It is used for the commit index (acked = durable match index) and for
// ReadIndex rounds (acked = highest heartbeat round answered).
func committedIndex(voters []uint64, acked func(id uint64) uint64) uint64 {
	n := len(voters)
	if n == 0 {
		return 0
	}
	var stack [maxFastVoters]uint64
	var vals []uint64
	if n <= maxFastVoters {
		vals = stack[:n]
	} else {
		vals = make([]uint64, n)
	}
	for i, id := range voters {
		vals[i] = acked(id)
	}
	// Insertion sort, descending: n is tiny and this avoids sort's
	// interface allocation on the hot path.
	for i := 1; i < n; i++ {
		v := vals[i]
		j := i
		for j > 0 && vals[j-1] < v {
			vals[j] = vals[j-1]
			j--
		}
		vals[j] = v
	}
	// vals[k-1] is the k-th largest; the majority-th largest is acked by at
	// least a majority.
	return vals[majority(n)-1]
}

// VoteResult is the outcome of tallying votes.
type VoteResult uint8

const (
	// VotePending means neither a majority of grants nor of rejections yet.
	VotePending VoteResult = iota
	// VoteWon means a majority granted.
	VoteWon
	// VoteLost means a majority rejected: the election cannot be won.
	VoteLost
)

// voteResult tallies votes (true = granted) cast by voters; votes from
// non-voters are ignored, missing votes are pending.
func voteResult(voters []uint64, votes map[uint64]bool) VoteResult {
	if len(voters) == 0 {
		// An empty configuration cannot elect anyone.
		return VoteLost
	}
	granted, rejected := 0, 0
	for _, id := range voters {
		v, ok := votes[id]
		if !ok {
			continue
		}
		if v {
			granted++
		} else {
			rejected++
		}
	}
	q := majority(len(voters))
	switch {
	case granted >= q:
		return VoteWon
	case len(voters)-rejected < q:
		return VoteLost
	default:
		return VotePending
	}
}
