#!/usr/bin/env bash
# taskhost's end-to-end benchmark beside BullMQ + Redis, interleaved on this
# machine (absolute numbers drift between runs; compare within one run):
#
#   scripts/bench-vs-bullmq.sh [REPS]        # default 3
#
# Needs the peers' set-up once (PEERS, default ../shared/peers: ./setup.sh).
# Each rep runs taskhost A, BullMQ A (no persistence, then AOF), taskhost B,
# BullMQ B (both modes), one after another; then taskhost's ingest rates.
# Read the medians of the lines each prints.
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
peers="${PEERS:-$PWD/../shared/peers}"
[ -x "$peers/run.sh" ] || { echo "no BullMQ peers at $peers (set PEERS)" >&2; exit 2; }
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release --quiet --workspace --bins
bench=target/release/taskhost-bench
# Each step starts with the page cache's dirty pages written out (`sync`),
# so that no step pays for the previous one's writes.
for rep in $(seq "$reps"); do
  echo "== rep $rep"
  sync; "$bench" a --reps 1 | grep "A rep"
  sync; "$peers/run.sh" A nopersist --conc 64
  sync; "$peers/run.sh" A aof --conc 64
  sync; "$bench" b --reps 1 | grep "B rep"
  sync; "$peers/run.sh" B nopersist
  sync; "$peers/run.sh" B aof
done
sync
"$bench" ingest --reps "$reps"
