#!/usr/bin/env bash
# Compares two builds of the cell under one benchmark, in pairs of runs back to back: A B, B A, ...
# On this shared machine the same binary swings by 15% or more within minutes, so one run of each
# says little; pairs run back to back see the same neighbours, and swapping the order every other
# pair cancels what running first or second does. Judge by how many pairs one side wins and by CPU
# per operation, which moves less than throughput.
#
#   scripts/bench-pairs.sh PAIRS BINARY_A BINARY_B [bench arguments...]
#   e.g. cp target/release/cell /tmp/cell-before   # then change, build, and:
#        scripts/bench-pairs.sh 4 /tmp/cell-before target/release/cell rounds
#
# Prints one line per run (the benchmark's key=value figures and its per-thread CPU split), then
# per figure the median of each side and in how many pairs B's figure was the lower.
set -euo pipefail
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 4 ] || usage
pairs=$1 a=$2 b=$3
shift 3
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-pairs: PAIRS must be a positive number, not '$pairs'" >&2; exit 2; }
for bin in "$a" "$b"; do
  [ -x "$bin" ] || { echo "bench-pairs: $bin is not an executable" >&2; exit 2; }
done
figures_file=$(mktemp)
trap 'rm -f "$figures_file"' EXIT
for i in $(seq "$pairs"); do
  order=("A $a" "B $b")
  [ $((i % 2)) -eq 0 ] && order=("B $b" "A $a")
  for run in "${order[@]}"; do
    side=${run%% *} bin=${run#* }
    out=$("$bin" bench "$@" 2>&1) || { echo "bench-pairs: $bin bench $* failed:" >&2; echo "$out" >&2; exit 1; }
    figures=$(echo "$out" | grep -aE '^[a-z_0-9]+=[0-9.]+$' | tr '\n' ' ')
    split=$(echo "$out" | grep -ao 'CPU [0-9.]* us/op (.*)' | tail -1)
    echo "pair $i $side $bin: $figures| $split"
    for kv in $figures; do echo "$i $side ${kv%%=*} ${kv#*=}"; done >> "$figures_file"
  done
done
# Per figure: the median of each side, and the pairs where B's value is below A's.
sort -k3,3 -k2,2 -k4,4g "$figures_file" | awk '
  function median(list, n,   parts) { split(list, parts, " "); return (n % 2) ? parts[(n + 1) / 2] : (parts[n / 2] + parts[n / 2 + 1]) / 2 }
  { key = $3; keys[key] = 1; values[key, $2] = values[key, $2] " " $4; count[key, $2]++; by_pair[key, $1, $2] = $4; pairs[$1] = 1 }
  END {
    for (key in keys) {
      lower = 0; total = 0
      for (p in pairs) if ((key, p, "A") in by_pair && (key, p, "B") in by_pair) { total++; if (by_pair[key, p, "B"] + 0 < by_pair[key, p, "A"] + 0) lower++ }
      printf "%s: A median %s, B median %s, B lower in %d of %d pairs\n", key, median(values[key, "A"], count[key, "A"]), median(values[key, "B"], count[key, "B"]), lower, total
    }
  }' | sort
