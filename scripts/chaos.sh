#!/usr/bin/env bash
# The chaos suite, long run: several `taskhost serve` nodes on one SQLite
# file and then on one SecantusDB, a mixed workload, and KILLS random
# SIGKILLs (every tenth a SIGSTOP longer than the lease; on MongoDB every
# eighth also a database kill and restart), then one 40 s database outage.
# Each run ends with its checks (every cron fire exactly once, every
# execution final, nothing lost) and prints a JSON summary line.
#
#   scripts/chaos.sh                 # 100 kills per store, release build
#   KILLS=20 PROFILE=debug scripts/chaos.sh
#
# MongoDB runs need the SecantusDB venv (scripts/mongo-test-server.sh makes
# it); they start a server of their own on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${KILLS:-100}"
profile="${PROFILE:-release}"
flag=()
[ "$profile" = release ] && flag=(--release)
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --workspace --bins "${flag[@]}"
chaos="target/$profile/chaos"
status=0
"$chaos" --store sqlite --kills "$kills" || status=1
if [ -x "${SECANTUS_VENV:-.secv}/bin/secantusd-py" ]; then
  "$chaos" --store mongodb --kills "$kills" || status=1
  "$chaos" --store mongodb --nodes 2 --outage 40 || status=1
else
  echo "chaos: no SecantusDB venv; run scripts/mongo-test-server.sh once for the MongoDB runs" >&2
  status=1
fi
exit "$status"
