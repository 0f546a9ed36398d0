#!/usr/bin/env bash
# Runs every `func FuzzXxx` in the module for $FUZZTIME each, one at a time
# (go test -fuzz accepts a single target per invocation).
set -euo pipefail
FUZZTIME=${FUZZTIME:-30s}
cd "$(dirname "$0")/.."
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . | sort | while read -r f; do
  pkg=./$(dirname "${f#./}")
  grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //' | while read -r target; do
    echo "== $pkg $target ($FUZZTIME)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done
