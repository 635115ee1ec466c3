#!/usr/bin/env bash
# The API contract, checked by a schema fuzzer: Schemathesis (PyPI, pinned)
# runs every operation of /openapi.json against a real `taskhost serve`
# with every check (`--checks all`: server errors, status codes, content
# types, response schemas and headers, schema-valid requests accepted and
# schema-violating ones refused, unsupported methods, missing auth, use
# after delete, resources available after create) and every phase,
# including the stateful one, which follows the document's response links.
# It runs with a token of every scope, with no token, and with another
# tenant's read-only token. scripts/schemathesis.toml says what JSON Schema
# cannot (see its comments); scripts/schemathesis_hooks.py writes durations
# and cron expressions.
#
#   scripts/schemathesis.sh            # 20 examples per operation
#   EXAMPLES=200 scripts/schemathesis.sh
#
# Uses target/debug/taskhost (built if missing) and a venv in .stv.
set -euo pipefail
cd "$(dirname "$0")/.."
version="4.32.5"
venv="${SCHEMATHESIS_VENV:-$PWD/.stv}"
examples="${EXAMPLES:-20}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi
secret="schemathesis-secret-0123456789abcdef"
# shellcheck source=lib/test-server.sh
source scripts/lib/test-server.sh
all="admin,operator,plugins:read,plugins:write,schedules:read,schedules:write,executions:read,executions:write,secrets:read,secrets:write,secrets:use"
admin_token="$("$bin" token --secret "$secret" --tenant acme --scopes "$all")"
admin="Authorization: Bearer $admin_token"
other="Authorization: Bearer $("$bin" token --secret "$secret" --tenant globex --scopes plugins:read)"

# A plugin to run (a fuzzer cannot write one), kept by a schedule pinned to
# it so that a fuzzed delete is refused; its id feeds the requests' plugin_id.
base="http://127.0.0.1:$port"
wasm="target/plugins/wasm32-wasip2/release/hello.wasm"
plugin=$(curl -sf -X POST "$base/v1/plugins?name=seed&version=1.0.0" -H "$admin" --data-binary "@$wasm" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X POST "$base/v1/schedules" -H "$admin" -H 'Content-Type: application/json' \
  -d "{\"name\": \"keeps-the-seed\", \"plugin_id\": \"$plugin\", \"trigger\": {\"kind\": \"manual\"}}" >/dev/null
mkdir -p target/schemathesis
printf '"%s"\n' "$plugin" > target/schemathesis/plugin_ids.txt

# A run may ask to `wait` up to 59 s for its end (one with a debounce
# period is not due before it): the client waits longer than that.
status=0
for who in admin none other; do
  case "$who" in
    admin) header="$admin" ;;
    none) header="X-No-Token: 1" ;;
    other) header="$other" ;;
  esac
  echo "== schemathesis ($who)"
  "$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$base/openapi.json" -H "$header" \
    --checks all --max-examples "$examples" --workers 2 --no-color --seed 1 \
    --request-timeout 75 \
    --report ndjson --report-dir "target/schemathesis/$who" || status=1
done
kill -0 "$pid" || { echo "the server died" >&2; status=1; }
exit "$status"
