# Sourced by the CI scripts that check the API from outside: builds the
# binaries, starts `taskhost serve` on a free port with the secret "$secret",
# waits for /healthz, and stops it (and removes its folder) on exit.
# Sets: bin, dir, port, pid.
cargo build --workspace --bins --quiet
bin=target/debug/taskhost
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" --jwt-secret "$secret" >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
