#!/usr/bin/env bash
# Contract fuzzing: Schemathesis (PyPI, pinned) generates requests from each served /openapi.json,
# the cell's and global-control's, and checks every answer against the document (every check:
# no 5xx, documented status codes and bodies, schema-valid requests accepted, schema-breaking ones
# refused). The exceptions the document states are in tests/contract/schemathesis.toml.
#
#   scripts/contract-fuzz.sh               # 50 examples per operation, fixed seed
#   EXAMPLES=500 SEED=random scripts/contract-fuzz.sh
#
# It starts its own global-control and uk cell (plain HTTP, the demo providers configured) on free
# loopback ports, in a temporary directory, and stops them on exit. Needs the debug binaries
# (`cargo build -p cell -p global-control`) and python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${SCHEMATHESIS_VERSION:-4.32.5}"
examples="${EXAMPLES:-50}"
seed="${SEED:-20261206}"
venv=.cache/schemathesis-$version
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "contract-fuzz: installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi
for bin in cell global-control; do
  [ -x "target/debug/$bin" ] || { echo "contract-fuzz: build first: cargo build -p cell -p global-control" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "contract-fuzz: $1 not ready; its log:" >&2
  cat "$2" >&2
  exit 1
}

admin="gct_contract_fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
gc_http=127.0.0.1:$(free_port)
gc_quic=127.0.0.1:$(free_port)
cell=127.0.0.1:$(free_port)
target/debug/global-control certs --out "$work/tls" --cells uk >/dev/null
GLOBAL_CONTROL_ADMIN_TOKEN=$admin target/debug/global-control serve --listen "$gc_http" --quic "$gc_quic" \
  --wrong-tokens-per-minute 1000000 \
  --data "$work/control" --tls-dir "$work/tls" --regions config/regions >"$work/control.log" 2>&1 &
pids+=($!)
wait_ready "http://$gc_http" "$work/control.log"
# The cell trusts global-control's operator-token key from its data directory (it follows no
# control plane here).
mkdir -p "$work/uk"
cp "$work/control/operator-key.json" "$work/uk/"
PROVIDER_DEMO_SECRET=contract-fuzz-demo PROVIDER_PULSAR_SECRET=contract-fuzz-pulsar \
  target/debug/cell serve --region config/regions/uk.toml --listen "$cell" --data "$work/uk" \
  --providers config/providers >"$work/uk.log" 2>&1 &
pids+=($!)
wait_ready "http://$cell" "$work/uk.log"
operator=$(curl -sf -XPOST "http://$gc_http/operator-tokens" -H "Authorization: Bearer $admin" -d '{"role":"admin"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

failed=0
run() {
  local name=$1 url=$2 token=$3
  echo "== schemathesis: $name ($url/openapi.json, $examples examples per operation, seed $seed)"
  local seed_option=(--seed "$seed")
  [ "$seed" = random ] && seed_option=()
  if ! "$venv/bin/schemathesis" --config-file tests/contract/schemathesis.toml --no-color run "$url/openapi.json" \
    --max-examples "$examples" "${seed_option[@]}" -H "Authorization: Bearer $token" \
    >"$work/$name.txt" 2>&1; then
    failed=1
  fi
  # The summary, or everything when it failed.
  if [ $failed = 1 ]; then cat "$work/$name.txt"; else sed -n '/SUMMARY/,$p' "$work/$name.txt"; fi
}
run cell "http://$cell" "$operator"
run global-control "http://$gc_http" "$admin"
exit $failed
