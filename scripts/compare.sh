#!/usr/bin/env bash
# make compare: at each client count, taking turns, REPEAT times:
#   raftpipe direct and client (embedded 3-node cluster in raftbench),
#   hashicorp/raft v1.8.0 default and tuned (bench/peers/hashicorp),
#   etcd v3.7.3 (3 member processes, bench/peers/etcd),
#   raftpipe as 3 raftnode processes driven by raftbench -cluster,
#   raftpipe direct with the keys sharded over SHARD_GROUPS Raft groups
#   (default 16; SHARD_GROUPS= leaves the row out; not GROUPS, which bash reserves).
# Every system starts a fresh cluster with fresh data directories for each
# run. Writes results/compare-DATE.md (medians, CPU per write, ratios) and
# keeps the raw JSON under results/compare-DATE/ (OUT overrides both, for
# smoke runs that must not land in results/).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
REPEAT=${REPEAT:-3}
CLIENTS=${CLIENTS:-"1 16 64 256"}
SHARD_GROUPS=${SHARD_GROUPS-16}
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-results/compare-$DATE}
RAW=$OUT
mkdir -p "$RAW" bin
go build -o bin/raftbench ./cmd/raftbench
go build -o bin/raftnode ./cmd/raftnode
(cd bench/peers/hashicorp && go build -o ../../../bin/hashicorp-peer .)
# The etcd server is a large build (about 650 packages); the Go build
# cache makes every later build a link only.
(cd bench/peers/etcd && go build -o ../../../bin/etcd-peer .)
{
  echo "date: $(date -u)"
  echo "cores: $(nproc)  cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "memory: $(free -h | awk '/Mem:/{print $2}')"
  echo "go: $(go version)"
  echo "kernel: $(uname -r)"
  echo "fdatasync (4 KiB, \$TMPDIR): $(go run ./bench/fsynclat -n 500 2>&1 | tail -1)"
  echo "settings: DURATION=$DURATION WARMUP=$WARMUP REPEAT=$REPEAT CLIENTS=$CLIENTS SHARD_GROUPS=$SHARD_GROUPS"
} > "$RAW/machine.txt"

# free_port prints a 127.0.0.1 port in [20000, 32000) that nothing listens
# on and that this script has not handed out yet. The range is below the
# kernel's ephemeral ports, so no outgoing connection takes it meanwhile
# (the rule internal/loopback follows).
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      echo "$p"
      return
    fi
  done
  echo "compare: no free port" >&2
  return 1
}

# start_raftnodes starts 3 raftnode processes on 127.0.0.1 as a new
# cluster (docs/deploy.md: the same -members and -bootstrap on each, the
# rest raftnode's defaults), waits until all three name the same leader,
# and sets RN_DIR, RN_PIDS, RN_CLIENTS and RN_ADMINS.
start_raftnodes() {
  RN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/raftnode-compare-XXXXXX")
  RN_PIDS="" RN_CLIENTS="" RN_ADMINS=""
  local i members="" peer client admin
  local -a peers clients admins
  for i in 1 2 3; do
    peer=127.0.0.1:$(free_port) client=127.0.0.1:$(free_port) admin=127.0.0.1:$(free_port)
    peers[i]=$peer clients[i]=$client admins[i]=$admin
    members="$members${members:+,}$i=$peer/$client"
  done
  for i in 1 2 3; do
    ./bin/raftnode run -id "$i" -cluster-id 1 -data-dir "$RN_DIR/n$i" \
      -peer-addr "${peers[i]}" -client-addr "${clients[i]}" -admin-addr "${admins[i]}" \
      -members "$members" -bootstrap -log-level warn 2>"$RN_DIR/n$i.log" &
    RN_PIDS="$RN_PIDS${RN_PIDS:+,}$!"
    RN_CLIENTS="$RN_CLIENTS${RN_CLIENTS:+,}${clients[i]}"
    RN_ADMINS="$RN_ADMINS${RN_ADMINS:+,}${admins[i]}"
  done
  local leaders
  for _ in $(seq 1 300); do
    leaders=$(for a in ${RN_ADMINS//,/ }; do
      curl -fsS --max-time 1 "http://$a/status" 2>/dev/null | grep -o '"leader": *[0-9]*' | grep -o '[0-9]*$' || echo 0
    done | sort -u)
    if [ "$(echo "$leaders" | wc -l)" = 1 ] && [ "$leaders" != 0 ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "compare: raftnode cluster in $RN_DIR has no leader after 30 s; logs:" >&2
  tail -n 20 "$RN_DIR"/n*.log >&2
  return 1
}

# stop_raftnodes stops them (SIGTERM: clean shutdown) and removes RN_DIR.
stop_raftnodes() {
  [ -n "${RN_PIDS:-}" ] || return 0
  kill -TERM ${RN_PIDS//,/ } 2>/dev/null || true
  wait ${RN_PIDS//,/ } 2>/dev/null || true
  rm -rf "$RN_DIR"
  RN_PIDS=""
}
trap stop_raftnodes EXIT

common=(-duration "$DURATION" -warmup "$WARMUP" -json -quiet)
for rep in $(seq 1 "$REPEAT"); do
  for c in $CLIENTS; do
    echo "== round $rep, $c clients" >&2
    ./bin/raftbench -mode direct -clients "$c" "${common[@]}" > "$RAW/raftpipe-direct-c$c-r$rep.json"
    if [ -n "$SHARD_GROUPS" ]; then
      ./bin/raftbench -mode direct -groups "$SHARD_GROUPS" -clients "$c" "${common[@]}" > "$RAW/raftpipe-direct-g$SHARD_GROUPS-c$c-r$rep.json"
    fi
    ./bin/hashicorp-peer -tuned -clients "$c" "${common[@]}" > "$RAW/hashicorp-tuned-c$c-r$rep.json"
    ./bin/raftbench -mode client -clients "$c" "${common[@]}" > "$RAW/raftpipe-client-c$c-r$rep.json"
    ./bin/etcd-peer -clients "$c" "${common[@]}" > "$RAW/etcd-c$c-r$rep.json"
    start_raftnodes
    ./bin/raftbench -cluster "$RN_CLIENTS" -admin "$RN_ADMINS" -cpu-pids "$RN_PIDS" -clients "$c" "${common[@]}" > "$RAW/raftnode-c$c-r$rep.json"
    stop_raftnodes
    ./bin/hashicorp-peer -clients "$c" "${common[@]}" > "$RAW/hashicorp-default-c$c-r$rep.json"
  done
done
go run ./bench/compare -in "$RAW" -machine "$RAW/machine.txt" -cmd "make compare CMP_DURATION=$DURATION WARMUP=$WARMUP REPEAT=$REPEAT CLIENTS=\"$CLIENTS\" SHARD_GROUPS=$SHARD_GROUPS" -out "$OUT.md"
echo "wrote $OUT.md" >&2
