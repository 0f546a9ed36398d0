package node

import (
	"slices"

	"github.com/raftpipe/raftpipe/raft"
)

// Leader spreading. With many groups on the same three or five hosts, the
// group leaders would otherwise pile up on whichever host won the first
// elections, and that host would do most of the work (leaders propose,
// replicate and answer reads). The rule is deliberately simple and needs
// no coordination: group g prefers the voter at position g mod N of the
// voters in ID order; a leader that is not g's preferred voter hands
// leadership to it (the core's TransferLeadership) once that voter holds
// the whole log, checked every balanceEveryTicks ticks at most, and at
// most balanceTransfersPerTick hand-offs per host and tick. A
// preferred voter that is down or behind simply leaves the leadership
// where it is; the check repeats until it catches up. Every host computes
// the same preference from the same membership, so no two leaders push a
// group back and forth.

// balanceEveryTicks is how often (in ticks of an awake leader) a leader
// checks whether to hand its group to the preferred voter: once per
// default election timeout, so a failed transfer (the core gives up after
// an election timeout) is retried no sooner than it could have finished.
const balanceEveryTicks = DefaultElectionTicks

// balanceTransfersPerTick bounds the hand-offs a host starts per tick over
// all its groups: after a node comes back, hundreds of its groups would
// otherwise hand leadership to it in the same tick, each an election at
// the target. 16 per 50 ms tick moves a thousand groups in about 3 s.
const balanceTransfersPerTick = 16

// preferredLeader is the voter that should lead group g, or 0 if there is
// no voter.
func preferredLeader(g uint64, voters []uint64) uint64 {
	if len(voters) == 0 {
		return 0
	}
	ids := slices.Clone(voters)
	slices.Sort(ids)
	return ids[g%uint64(len(ids))]
}

// maybeBalance runs on the loop at a tick of an awake replica: a leader of
// a host with more than one group, not its group's preferred voter, hands
// leadership to that voter once it is caught up.
func (rep *replica) maybeBalance() {
	if rep.cfg.Groups <= 1 || rep.cfg.DisableLeaderBalance || !rep.rn.IsLeader() {
		return
	}
	if rep.balanceTicks++; rep.balanceTicks < balanceEveryTicks {
		return
	}
	rep.balanceTicks = 0
	pref := preferredLeader(rep.group, rep.members.conf.Voters)
	if pref == 0 || pref == rep.cfg.ID {
		return
	}
	st := rep.rn.Status()
	if st.LeadTransferee != 0 {
		return
	}
	pr, ok := st.Progress[pref]
	if !ok || pr.IsLearner || pr.State != raft.StateReplicate || pr.Match != st.LastIndex || !pr.RecentActive {
		return
	}
	if rep.host.balanceTokens.Add(-1) < 0 {
		rep.balanceTicks = balanceEveryTicks - 1 // the host's budget is spent: try next tick
		return
	}
	rep.log.Debug("handing leadership to the group's preferred voter", "group", rep.group, "to", pref)
	rep.metrics.leaderTransfers.Add(1)
	rep.rn.TransferLeadership(pref)
}
