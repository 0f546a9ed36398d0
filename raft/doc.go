// Package raft is raftpipe's consensus core: a deterministic Raft state
// machine with pipelined replication, PreVote and CheckQuorum elections,
// snapshots, single-server membership changes, leadership transfer and
// batched ReadIndex reads.
//
// The core does no I/O, starts no goroutines, reads no clock and uses no
// global randomness. Time is the number of Tick calls; randomness comes from
// Config.Rand. Same inputs, same outputs: that is what lets the simulation
// in sim_test.go explore thousands of interleavings and replay any failure
// from its seed. The runtime (raft/node) does all I/O around it.
//
// # Reading order
//
// rawnode.go (the API and Ready), raft.go (state, Step dispatch, role
// changes), step_leader.go / step_follower.go / step_candidate.go,
// log.go + log_unstable.go (durable log + not-yet-durable suffix),
// progress.go + inflights.go (per-follower flow control), quorum.go (pure
// majority arithmetic), confchange.go (membership), read_only.go
// (ReadIndex), lease.go (lease reads), quiesce.go (idle groups stop their
// timers), storage.go + storage_memory.go.
//
// # Call contract
//
// One goroutine owns a RawNode. The runtime's loop:
//
//  0. Start: NewRawNode(Config{Storage: <the durable log>, Applied:
//     <the state machine's applied index>}). A founding member of a new
//     cluster first writes BootstrapEntries(initial membership) with
//     HardState{Term: 1, Commit: len} into its empty log (MemoryStorage
//     does this itself); a node joining an existing cluster starts with an
//     empty log and an empty ConfState and is added by the leader with
//     ProposeConfChange (as a learner, then promoted).
//  1. Feed inputs: Tick() on every timer tick (or, for a node that is
//     Quiesced(), TickQuiesced(n) for the n ticks skipped, before its next
//     input; see "Quiescence"); Step(m) for every message
//     received from a peer (for MsgSnap: only after the whole snapshot data
//     has arrived and been staged); Propose / ProposeConfChange / ReadIndex /
//     TransferLeadership for client work; ReportUnreachable and
//     ReportSnapshot for transport outcomes (ReportUnreachable also when a
//     peer's connection breaks), Wake for other reasons to leave
//     quiescence; AckPersisted when the log
//     writer reports durability (step 5). Step keeps references to the
//     Data of the entries in m (it copies the []Entry array, not the
//     bytes): the transport must not reuse a payload buffer after handing
//     it to Step.
//  2. If HasReady(), call Ready() once. Ready() hands everything in it over:
//     the same entries are never returned again unless a later leader
//     overwrote them.
//  3. Act on the Ready, in this order of constraints:
//     a. Send Ready.Messages now. They include the leader's MsgApps, which
//     replicate in parallel with the leader's own fsync (thesis §10.2.1).
//     A MsgSnap in Messages carries only SnapshotMeta: stream the latest
//     snapshot's data to the follower, then ALWAYS call ReportSnapshot
//     (failed=true if the stream broke): until then the leader sends that
//     follower nothing. Slices in a Ready (Entries, CommittedEntries,
//     message Entries) are read-only; they may be retained (MemoryStorage
//     keeps Ready.Entries without copying).
//     b. Persist, in Ready order (FIFO across Readys, possibly
//     asynchronously and batched with later Readys): first Ready.Snapshot
//     (reset the log to start after Snapshot.Index and restore the state
//     machine from the staged data; the log's snapshot marker must be
//     durable no later than the restored state machine, so that after a
//     crash Applied never exceeds Storage.LastIndex()), then Ready.Entries
//     (the first entry may be at or below the last durable index: overwrite
//     the log's suffix from there), then Ready.HardState if not empty. Entries must be
//     readable through Storage by the time they are acked.
//     c. Apply Ready.CommittedEntries in order (they are committed and
//     durable locally). For an EntryConfChange entry, decode it with
//     DecodeConfChange and call ApplyConfChange: it returns the membership
//     to record with snapshots taken at or after that index.
//     d. Serve each ReadState once the state machine has applied its Index.
//     e. Handle Ready.SoftState: if this node stopped being leader, fail
//     every pending proposal and read with "unknown outcome / retry".
//  4. Call Advance(rd). Ready and Advance strictly alternate. Advance does
//     not wait for persistence: the runtime may call Ready again while
//     earlier Readys are still being written.
//  5. When a Ready's persistence completes, send its
//     Ready.MessagesAfterPersist (vote requests and grants, append acks:
//     they promise durable state), and call AckPersisted(index, term) with
//     the last entry of the Readys made durable (or the snapshot's index
//     and term if a Ready had only a snapshot). A Ready with only a
//     HardState needs no ack. The leader counts itself towards commit only
//     for acked entries, and committed entries are handed out for applying
//     only once acked.
//  6. Snapshots and compaction: the core learns of them from Storage.
//     After applying up to index i the runtime may take a snapshot at i
//     (recording ApplyConfChange's membership), make Storage.Snapshot()
//     return its metadata, and then compact the log up to i. Keep some
//     entries below i so slightly lagging followers need no snapshot.
//
// After a crash, everything not acked as durable is lost; the runtime
// restarts with NewRawNode(Config{Storage: <the recovered log>, Applied:
// <the state machine's applied index>}).
//
// # Proposals are never lost silently
//
// Propose returns an error if the entries were not appended (not leader,
// transfer under way, backpressure). Once appended at index i in term t the
// entry either commits or is overwritten by a later leader. The runtime
// remembers (i, t) per pending proposal and, when it applies the entry at
// index i, checks its term: a different term means the proposal was
// overwritten and its caller gets an "unknown outcome" error. A leader that
// steps down (SoftState change) cannot know the outcome either: the runtime
// fails all pending proposals with "unknown outcome" at that point, or
// keeps waiting for index i to be applied (both are correct; the second
// avoids spurious errors).
//
// # Replication and flow control
//
// The leader keeps a Progress per member. In probe state it sends one
// MsgApp at a time; a rejection carries a hint (RejectHint = first index of
// the follower's conflicting term, HintTerm = that term, or the follower's
// last index + 1 with HintTerm 0 if its log is short), so the leader backs
// up a whole term per round trip. On the first ack the follower moves to
// replicate state: the leader streams batches of at most
// MaxSizePerMsgBytes, advancing Next optimistically, bounded by
// MaxInflightMsgs messages and MaxInflightBytes bytes in flight.
// Heartbeats carry min(commit, follower's match). A follower whose next
// entries are compacted moves to snapshot state and receives MsgSnap.
//
// The leader commits index i once a quorum of voters hold it durably and
// the entry at i is of the leader's current term (Raft §5.4.2, figure 8);
// a new leader appends an EntryNoop to commit earlier terms' entries.
//
// # Elections
//
// A follower that hears from no leader for a random timeout in
// [ElectionTicks, 2*ElectionTicks) campaigns. With PreVote it first asks
// whether it could win without raising its term, so a node rejoining after
// a partition cannot depose a healthy leader. With CheckQuorum a leader
// that has not heard from a quorum within the last ElectionTicks ticks
// steps down (checked every tick), and a
// node that heard from a leader within ElectionTicks ignores vote requests
// (except those of a leadership transfer). Term and vote are persisted
// before any vote request or grant leaves the node (MessagesAfterPersist).
//
// # Membership
//
// Changes are single-server (add voter, add learner, promote learner, remove
// member) and take effect when the change entry is APPENDED to a node's
// log, committed or not (thesis §4.1); truncating the entry reverts the
// change. Two rules keep it safe:
//
//   - One at a time: the leader refuses a change while an earlier one is
//     uncommitted (ErrConfChangePending). Any two configurations that are
//     simultaneously in use then differ by one server, and majorities of
//     two such configurations always intersect, so no two leaders can be
//     elected in one term and committed entries survive.
//   - The known single-server bug (Ongaro, raft-dev, 2015): a new leader
//     could propose a change while an uncommitted change from an earlier
//     term is still in other logs, letting two disjoint-quorum
//     configurations coexist. Fix: a leader proposes a change only after it
//     has committed an entry of its own term (its no-op).
//
// Append-time rather than apply-time: with apply-time changes a node that
// lags in learning the commit index keeps using an older configuration
// while the leader has moved two changes ahead; their quorums need not
// intersect. Append-time needs no such reasoning about apply lag.
//
// A removed leader keeps replicating (without counting itself) until its
// removal commits, then steps down. Learners receive the log but neither
// vote nor count; ConfAddVoter on a learner promotes it once it caught up
// (the runtime decides when: Status().Progress[id].Match near LastIndex).
// New nodes start with an empty membership in their storage and learn the
// configuration from the log (or a snapshot) the leader sends them; that
// is why a new cluster's founding membership is itself written as log
// entries (BootstrapEntries). Storage.InitialState's ConfState is the
// membership as of FirstIndex()-1 (a snapshot's, or empty for a log that
// starts at index 1); the core replays the conf-change entries after it.
//
// # Leadership transfer
//
// TransferLeadership(to) stops accepting proposals, brings `to` up to date
// and sends MsgTimeoutNow; `to` campaigns at once, skipping PreVote, and its
// vote requests carry a marker (Context) so voters skip the CheckQuorum
// lease. The transfer aborts after ElectionTicks.
//
// # Linearizable reads
//
// ReadIndex (thesis §6.4), batched: reads queued before a Ready share one
// heartbeat round; a quorum's answers to that round confirm them all. A
// read is answered only once the leader has committed an entry of its term.
//
// # Lease reads
//
// With Config.LeaseReads (REQUIRES CheckQuorum) the leader answers a
// ReadIndex at once, at its commit index, while it holds a lease
// (lease.go); otherwise the read takes a heartbeat round as above. Write
// E = ElectionTicks, D = LeaseDriftTicks. The rules:
//
//  1. Every heartbeat of a LeaseReads leader carries a fresh round; the
//     leader remembers the tick s at which it queued each round.
//  2. A LeaseReads node that receives MsgApp, MsgHeartbeat or MsgSnap from
//     the leader of its term sets quietUntilTick = tickCount + E; on start
//     it sets quietUntilTick = E. While tickCount < quietUntilTick it grants
//     no vote or pre-vote to anyone (re-granting the vote it already cast
//     in this term aside), at any term, and does not campaign, except for
//     a leadership transfer (MsgTimeoutNow, transfer-marked votes). This
//     window is kept apart from the CheckQuorum rule above, which looks at
//     lead and electionElapsed: both are reset by any message of a newer
//     term (a stale append answer is enough) and by a restart, so that rule
//     alone does not protect a lease. A LeaseReads follower appends
//     leaseMarker to its heartbeat answers: "my quiet window covers this".
//  3. The lease start is the largest s such that a quorum of voters (the
//     leader itself counting) answered, with the marker, rounds queued at
//     or after s, in this term and since the last change of the voter set.
//     The leader serves lease reads while it leads, has committed an entry
//     of its term, has started no transfer in this term, and
//     tickCount < s + E - D.
//
// Clock assumption (D): in any stretch of real time in which one voter's
// tick count grows by k, the count of every other voter that is up
// throughout grows by at least k - D. Ticks are the only clock; the
// runtime must tick by elapsed monotonic time (catching up missed ticks),
// so that D covers tick phase and rate drift only (docs/deploy.md).
//
// Safety. Suppose leader L of term T serves a read at its tick c with
// c < s + E - D, and some write W was acknowledged before the read
// arrived. If W was committed in a term <= T, L has it: leader
// completeness gives every entry committed before T, and L's commit index
// covers its own term's commits once it committed one (rule 3). So W was
// committed by a leader L' of a term T' > T, elected before the read.
// L' won votes from a quorum of its configuration. Configurations in use
// at once differ by at most one server (see Membership), and the lease
// quorum Q is a quorum of L's voter set since its last change (rule 3),
// so the two quorums share a member f. If f = L, L voted for another
// candidate, which it does only as a follower: it had stopped leading, and
// serving, before. Otherwise f answered a round that L queued at tick
// >= s; f received it after L queued it, and granted L' its vote (or its
// own vote, campaigning) only after its quiet window: after counting E
// ticks from the receipt (rule 2; a restart in between only restarts the
// window, and f counts nothing while down). In that stretch, which starts
// after L queued the round, L counted at least E - D ticks (the clock
// assumption), so at the vote L's count was at least s + E - D > c: L's
// read came before the vote, before L' was elected, before W committed:
// a contradiction. A transfer is the one way for a candidate to bypass
// quiet windows, and a MsgTimeoutNow can arrive long after the transfer
// aborted: so the first transfer of a term ends L's lease for the rest of
// that term. MsgTimeoutNow of an older term is stale at any node of term
// T and is dropped.
//
// Only heartbeat answers renew a lease (a MsgAppResp does not say which
// send it answers); a leader heartbeats every HeartbeatTicks anyway. The
// simulation checks, at every step under its bounded-drift clock, that no
// leader holds a lease while a leader of a later term exists, and that
// every read (lease reads included) covers every entry committed before
// it was issued.
//
// # Quiescence
//
// With Config.QuiesceAfterTicks = Q > 0 an idle group stops its timers, so
// that a host can carry many idle groups (quiesce.go). The rules:
//
//  1. A leader is idle in a tick if it has committed an entry of its term,
//     everything in its log is committed, every member (learners too)
//     holds the whole log durably (Match = last index, replicate state),
//     and no read, conf change or transfer is pending. Q consecutive idle
//     ticks start an attempt: from then on its heartbeats are quiesce
//     notices, each a heartbeat round whose Context ends in 'q', with
//     Commit = the last index. Any non-idle tick, proposal, read, conf
//     change or transfer ends the attempt.
//  2. A follower (with Q > 0) that receives a notice from the leader of
//     its term and whose log ends at the notice's Commit, all of it
//     committed, quiesces and answers with the round and 'Q'. A follower
//     that is behind answers without 'Q' and keeps its timer.
//  3. The leader quiesces once every other member answered a notice of
//     the current attempt with 'Q' and it is still idle. Until then it
//     sends a notice every heartbeat interval: lost notices and answers
//     are retried.
//  4. While quiesced, Tick only counts: tickCount (which leases and quiet
//     windows use) and, on a follower, electionElapsed (the silence the
//     vote checks look at); no heartbeat, CheckQuorum step-down, or
//     campaign. HasReady stays false.
//  5. Waking: client work at the leader; Wake; ReportUnreachable(p) when p
//     is a member (at a leader) or the leader (at a follower); any message
//     of our term or newer, except a 'Q' answer (answers to earlier
//     notices may arrive after the leader quiesced); any role or term
//     change. A woken leader gives every member a fresh election timeout
//     for CheckQuorum (nobody sent anything while all were quiesced) and,
//     unless client work woke it, heartbeats at once. A woken follower
//     restarts its election timer with a fresh jitter and, if it still
//     follows the same leader, pokes it with an empty heartbeat answer,
//     which wakes it: a follower that wrongly suspected the leader thus
//     gets a heartbeat and no election follows; a dead leader never
//     answers and an election starts after the usual timeout. A follower
//     woken by a vote request keeps its real silence (at most one
//     timeout), so that it grants the vote that follows a pre-vote.
//
// Safety. Quiescence changes when timers fire and whether heartbeats are
// sent, nothing else: no term, vote, log entry or commit index is set by
// it, a notice is an ordinary heartbeat (its Commit is bounded by the
// follower's match, as always), and a follower checks a notice before
// acting on it only to decide whether to stop its own timer. Raft's
// safety never rests on timers or heartbeats arriving: any of them may be
// delayed or lost. So election safety, log matching, leader completeness
// and state machine safety hold as before. Lease reads, which do rest on
// time, do not rest on time spent quiesced: a quiesced leader serves no
// lease read, and a woken one forgets its lease and takes a new one only
// from heartbeat rounds sent after the wake (lease.restartAfter, as after
// a voter-set change), so the first read after a wake takes a heartbeat
// round; followers' quiet windows keep counting in tickCount, and a
// follower that counted fewer ticks than real time only stays quiet
// longer. CheckQuorum only steps leaders down (liveness), and a woken
// leader runs it again, stepping down one election timeout later if no
// quorum answers. ReadIndex needs a fresh quorum round as always. What quiescence costs is detection: a quiesced follower does
// not notice on its own that its leader died; the runtime must tell it
// (ReportUnreachable), or the next client request or candidate does.
//
// Runtime duties: set the same Q on every member (a follower without it
// never answers 'Q', so its leader keeps heartbeating: safe, not quiet);
// call ReportUnreachable(p) in every group p belongs to when the
// connection to p breaks or p is suspected down; keep ticking quiesced
// groups (a few tens of ns each) or stop and account for the skipped
// ticks with TickQuiesced(n) before their next input. Dropping them is
// safe by the argument above, but then a woken node's election and
// CheckQuorum timers, and its followers' vote checks, run late.
//

// # Invariants
//
// Broken invariants panic with a message naming them. Cheap checks are
// always on; costly ones (whole-log scans after every input) are compiled
// in only with `-tags invariants`; run the simulation with them.
//
// # Testing
//
//	go test ./raft                                  # unit tests, scenarios, ~60 s of simulation
//	go test ./raft -run TestInteraction -rewrite    # regenerate testdata/*.txt after a deliberate change
//	go test ./raft -run 'TestSim$' -seed 1234       # replay one simulation seed (failures print theirs)
//	go test ./raft -run 'TestSimQuiesce$' -seed 12  # replay a seed of the quiescence simulation
//	go test ./raft -run 'TestSimGroups$' -seed 7    # replay a seed of the multi-group simulation
//	go test -tags invariants ./raft -run 'TestSim$' -sim.duration 10m
//	go test -run '^$' -bench CoreReplicate -benchmem ./raft
//	go test -run '^$' -bench 'TickIdle|TickQuiesced' -count 5 ./raft  # per-tick cost, idle vs quiesced
//	go test -run '^$' -bench QuiescedReplicaMemory -benchtime 1x ./raft
//
// The simulation (sim_test.go) runs 3- and 5-node clusters whose runtime
// persists asynchronously and loses everything not yet acked on a crash;
// it drops, delays, reorders and duplicates messages, partitions and heals,
// crashes and restarts nodes, changes membership, transfers leadership and
// serves reads, and after every step checks election safety, log matching,
// leader completeness, state machine safety, ApplyConfChange agreement,
// read linearizability and lease exclusivity (in seeds with LeaseReads,
// whose ticks follow a clock model with drift bounded by
// LeaseDriftTicks); at the end it heals everything and checks that
// every accepted proposal was committed or visibly overwritten. A third
// of its seeds, and every seed of TestSimQuiesce, run with quiescence:
// idle stretches, transports that report (or miss) broken connections,
// false suspicions; at every step a quiesced node must hold its whole log
// committed (a quiesced leader: nothing in flight), and at the end the
// settled cluster must quiesce and then send nothing for 100 ticks.
//
// TestSimGroups (sim_groups_test.go) runs 2 to 16 groups on 3 or 5 shared
// simulated hosts: one link per host pair carries every group's messages,
// so a crash, a partition, a slow disk or a broken connection hits every
// group of a host at once, and one persist step may fsync every group's
// Ready together. Each group runs the checks above; on top, every message
// must carry its sender's group and every log hold only its own group's
// entries.
package raft
