#!/usr/bin/env bash
# Compares two builds of the cell under one benchmark, in alternated runs: A, B, A, B, ...
# On this shared machine the same binary swings by 15% or more within minutes, so one run of each
# says little; pairs run back to back see the same neighbours. Judge by how many pairs one side
# wins and by CPU per operation, which moves less than throughput.
#
#   scripts/bench-pairs.sh PAIRS BINARY_A BINARY_B [bench arguments...]
#   e.g. cp target/release/cell /tmp/cell-before   # then change, build, and:
#        scripts/bench-pairs.sh 4 /tmp/cell-before target/release/cell rounds
#
# Prints one line per run: the benchmark's key=value figures and its per-thread CPU split.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
pairs=$1 a=$2 b=$3
shift 3
for bin in "$a" "$b"; do
  [ -x "$bin" ] || { echo "bench-pairs: $bin is not an executable" >&2; exit 2; }
done
for i in $(seq "$pairs"); do
  for bin in "$a" "$b"; do
    out=$("$bin" bench "$@" 2>&1) || { echo "bench-pairs: $bin bench $* failed:" >&2; echo "$out" >&2; exit 1; }
    figures=$(echo "$out" | grep -E '^[a-z_0-9]+=[0-9.]+$' | tr '\n' ' ')
    split=$(echo "$out" | grep -o 'CPU [0-9.]* us/op (.*)' | tail -1)
    echo "pair $i $bin: $figures| $split"
  done
done
