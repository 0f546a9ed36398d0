#!/usr/bin/env bash
# A/B comparison of two raftbench binaries, taking turns (ABAB...), so
# that both see the same machine noise. Prints every run and the medians
# of ops/s and CPU µs per write. Usage:
#   scripts/ab.sh BIN_A BIN_B ROUNDS [raftbench flags...]
set -euo pipefail
a=$1 b=$2 rounds=$3
shift 3
tmp=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  for v in a b; do
    bin=$a; [ "$v" = b ] && bin=$b
    "$bin" -json -quiet "$@" > "$tmp/$v-$r.json"
    python3 - "$tmp/$v-$r.json" "$v" "$r" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} round {sys.argv[3]}: {d['ops_per_s']:9.0f} ops/s  cpu {d['cpu_us_per_op']:5.1f} µs/op  p50 {d['p50_us']} µs  p99 {d['p99_us']} µs  p99.9 {d['p999_us']} µs  max {d['max_us']} µs")
PY
  done
done
python3 - "$tmp" "$rounds" <<'PY'
import json,sys,statistics,glob
tmp,rounds=sys.argv[1],int(sys.argv[2])
for v in "ab":
    ds=[json.load(open(f"{tmp}/{v}-{r}.json")) for r in range(1,rounds+1)]
    med=lambda k: statistics.median(d[k] for d in ds)
    print(f"median {v}: {med('ops_per_s'):.0f} ops/s, {med('cpu_us_per_op'):.1f} µs/op CPU, p50 {med('p50_us'):.0f} µs, p99 {med('p99_us'):.0f} µs, p99.9 {med('p999_us'):.0f} µs")
PY
rm -rf "$tmp"
