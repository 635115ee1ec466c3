#!/usr/bin/env bash
# Runs the README's first command exactly as written (read from README.md, so
# the two cannot drift), waits until the server answers /healthz, then stops it
# with SIGTERM and checks that it shut down cleanly.
#
#   scripts/readme-serve.sh            # used by .ci/run
#
# Environment: README_SERVE_TIMEOUT (seconds to wait for /healthz, including the
# build that `cargo run` does first; default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
timeout_s="${README_SERVE_TIMEOUT:-1800}"

# The first command is the first line of the first ```sh block under
# "## The two commands".
cmd="$(awk '/^## The two commands/{s=1} s&&/^```sh/{getline; print; exit}' README.md)"
case "$cmd" in
  "cargo run -- serve"*|"cargo run --release -- serve"*) ;;
  *) echo "readme-serve: unexpected first command in README.md: '$cmd'" >&2; exit 1 ;;
esac
echo "readme-serve: running '$cmd'"

log="target/readme-serve.log"
mkdir -p target
# Its own process group, so that stopping it stops cargo and the server.
setsid bash -c "exec $cmd" >"$log" 2>&1 &
pid=$!
stop() { kill -TERM -- "-$pid" 2>/dev/null || true; }
trap stop EXIT

address="http://127.0.0.1:8080"
deadline=$((SECONDS + timeout_s))
until curl -sf "$address/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "readme-serve: the command exited before answering /healthz:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "readme-serve: no answer on $address/healthz after ${timeout_s}s" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 2
done
echo "readme-serve: $address/healthz answered: $(curl -sf "$address/healthz")"
grep -m1 "taskhost listening on" "$log" || true

# Graceful stop: SIGTERM to the server (cargo passes it on to its child).
kill -TERM -- "-$pid"
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "readme-serve: the server did not stop within 60s of SIGTERM" >&2
  exit 1
fi
trap - EXIT
echo "readme-serve: stopped cleanly"
