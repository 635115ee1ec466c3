#!/usr/bin/env bash
# Starts a local SecantusDB (a MongoDB-wire server) for the MongoDB store tests.
#
#   scripts/mongo-test-server.sh            # installs if needed, starts, waits for a ping
#   export TASKHOST_TEST_MONGODB_URI='mongodb://127.0.0.1:27150/?directConnection=true&journal=true'
#   cargo test --workspace
#
# Environment: SECANTUS_PORT (27150), SECANTUS_DIR (./target/secantus), SECANTUS_VENV (./.secv).
# Prints the URI to use on its last line. The server runs in the background;
# its pid is in $SECANTUS_DIR/pid and its log in $SECANTUS_DIR/log.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${SECANTUS_PORT:-27150}"
dir="${SECANTUS_DIR:-$PWD/target/secantus}"
venv="${SECANTUS_VENV:-$PWD/.secv}"
version="0.7.0b3"

if [ ! -x "$venv/bin/secantusd-py" ]; then
  echo "installing SecantusDB $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --pre "SecantusDB==$version"
fi

mkdir -p "$dir/data"
if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
  echo "SecantusDB already running (pid $(cat "$dir/pid"))" >&2
else
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$dir/data" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
fi

uri="mongodb://127.0.0.1:$port/?directConnection=true&journal=true"
for _ in $(seq 1 120); do
  if "$venv/bin/python" - "$port" <<'PY' 2>/dev/null; then
import socket, struct, sys
# OP_MSG {ping: 1, $db: "admin"}: a real round trip, not just an open port.
body = b"\x00" + bytes.fromhex("1e000000") + b"\x10ping\x00\x01\x00\x00\x00\x02$db\x00\x06\x00\x00\x00admin\x00\x00"
header = struct.pack("<iiii", 16 + 4 + len(body), 1, 0, 2013)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(header + b"\x00\x00\x00\x00" + body)
reply = s.recv(4096)
sys.exit(0 if b"ok" in reply else 1)
PY
    echo "SecantusDB is up on port $port" >&2
    echo "$uri"
    exit 0
  fi
  sleep 0.5
done
echo "SecantusDB did not answer a ping on port $port; see $dir/log" >&2
tail -20 "$dir/log" >&2 || true
exit 1
