#!/usr/bin/env bash
# The API contract, checked by a schema fuzzer: Schemathesis (PyPI, pinned)
# runs every operation of /openapi.json against a real `taskhost serve` with
# the checks not_a_server_error, status_code_conformance,
# content_type_conformance and response_schema_conformance — with a token of
# every scope, with no token, and with another tenant's read-only token.
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
all="admin,plugins:read,plugins:write,schedules:read,schedules:write,executions:read,executions:write,secrets:read,secrets:write"
admin="Authorization: Bearer $("$bin" token --secret "$secret" --tenant acme --scopes "$all")"
other="Authorization: Bearer $("$bin" token --secret "$secret" --tenant globex --scopes plugins:read)"
status=0
for who in admin none other; do
  case "$who" in
    admin) header="$admin" ;;
    none) header="X-No-Token: 1" ;;
    other) header="$other" ;;
  esac
  echo "== schemathesis ($who)"
  "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" -H "$header" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --workers 2 --no-color --seed 1 || status=1
done
kill -0 "$pid" || { echo "the server died" >&2; status=1; }
exit "$status"
