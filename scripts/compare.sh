#!/usr/bin/env bash
# make compare: raftpipe (direct and client modes) and hashicorp/raft v1.8.0
# at 1, 16, 64 and 256 clients, taking turns, REPEAT times each; writes
# results/compare-DATE.md (medians and ratios) and keeps the raw JSON under
# results/compare-DATE/.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
REPEAT=${REPEAT:-3}
CLIENTS=${CLIENTS:-"1 16 64 256"}
DATE=$(date -u +%Y-%m-%d)
RAW=results/compare-$DATE
mkdir -p "$RAW" bin
go build -o bin/raftbench ./cmd/raftbench
(cd bench/peers/hashicorp && go build -o ../../../bin/hashicorp-peer .)
{
  echo "date: $(date -u)"
  echo "cores: $(nproc)  cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "memory: $(free -h | awk '/Mem:/{print $2}')"
  echo "go: $(go version)"
  echo "kernel: $(uname -r)"
  echo "fdatasync (4 KiB, \$TMPDIR): $(go run ./bench/fsynclat -n 500 2>&1 | tail -1)"
  echo "settings: DURATION=$DURATION WARMUP=$WARMUP REPEAT=$REPEAT CLIENTS=$CLIENTS"
} > "$RAW/machine.txt"
for rep in $(seq 1 "$REPEAT"); do
  for c in $CLIENTS; do
    echo "== round $rep, $c clients" >&2
    ./bin/raftbench -mode direct -clients "$c" -duration "$DURATION" -warmup "$WARMUP" -json -quiet > "$RAW/raftpipe-direct-c$c-r$rep.json"
    ./bin/hashicorp-peer -clients "$c" -duration "$DURATION" -warmup "$WARMUP" -json -quiet > "$RAW/hashicorp-c$c-r$rep.json"
    ./bin/raftbench -mode client -clients "$c" -duration "$DURATION" -warmup "$WARMUP" -json -quiet > "$RAW/raftpipe-client-c$c-r$rep.json"
  done
done
go run ./bench/compare -in "$RAW" -machine "$RAW/machine.txt" -cmd "make compare DURATION=$DURATION REPEAT=$REPEAT" -out "results/compare-$DATE.md"
echo "wrote results/compare-$DATE.md" >&2
