#!/usr/bin/env bash
# Makes tests/fixtures/upgrade/REV/: a store written by taskhost at REV (the
# previous release), which the upgrade test opens with this one.
#
#   scripts/make-upgrade-fixture.sh REV [TASKHOST_BINARY_OF_REV]
#
# Without a binary it builds REV in a git worktree (a debug build, minutes).
# The old node serves a fresh data folder while this script, through its API,
# uploads the hello plugin (world 0.1.0, tests/fixtures), pins an alias,
# creates a cron schedule and a paused one, runs the plugin once ad hoc and
# sets a secret; then it stops (SIGTERM: the store is checkpointed) and its
# store, development secrets key and what it was given are copied here.
set -euo pipefail
rev="${1:?usage: scripts/make-upgrade-fixture.sh REV [BINARY]}"
root="$(git rev-parse --show-toplevel)"
cd "$root"
work="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; git worktree remove --force "$work/src" 2>/dev/null || true; rm -rf "$work"' EXIT
bin="${2:-}"
if [ -z "$bin" ]; then
    git worktree add --detach "$work/src" "$rev"
    (cd "$work/src" && CARGO_INCREMENTAL=0 cargo build --bin taskhost)
    bin="$work/src/target/debug/taskhost"
fi
secret="upgrade-fixture-jwt-secret-0123456789"
data="$work/data"
port=18191
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --jwt-secret "$secret" >"$work/serve.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done
token="$("$bin" token --secret "$secret" --tenant acme --scopes admin)"
api() { curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
plugin="$(api -X POST "$url/v1/plugins?name=hello&version=1.0.0" -H 'Content-Type: application/wasm' \
    --data-binary @tests/fixtures/hello-contract-0.1.0-before-secrets.wasm | sed -E 's/^\{"id":"([^"]+)".*/\1/')"
api -X POST "$url/v1/plugins/hello/aliases/stable" -d '{"version": "1.0.0"}' >/dev/null
api -X POST "$url/v1/schedules" -d "{\"name\": \"greet\", \"plugin\": \"hello@stable\",
    \"trigger\": {\"kind\": \"cron\", \"expr\": \"*/5 * * * *\", \"timezone\": \"Europe/London\"},
    \"input\": {\"name\": \"cron\"}}" >/dev/null
api -X POST "$url/v1/schedules" -d "{\"name\": \"paused\", \"plugin_id\": \"$plugin\",
    \"trigger\": {\"kind\": \"interval\", \"every\": \"1h\"}, \"paused\": true}" >/dev/null
api -X POST "$url/v1/executions" -d "{\"plugin_id\": \"$plugin\", \"input\": {\"name\": \"Ada\"}, \"wait\": \"10s\"}" \
    | grep -q '"status":"succeeded"'
api -X PUT "$url/v1/secrets/PARTNER_TOKEN" -d '{"value": "fixture-secret-value"}' >/dev/null
kill -TERM "$pid"
wait "$pid" || true
pid=""
# Its last writes may still be in the write-ahead log: fold them into the file.
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()' \
    "$data/taskhost.db"
out="tests/fixtures/upgrade/$rev"
mkdir -p "$out"
cp "$data/taskhost.db" "$out/taskhost.db"
cp "$data/secrets-key" "$out/secrets-key"
cat >"$out/MADE.md" <<MADE
# A store written by taskhost $rev

Made by \`scripts/make-upgrade-fixture.sh $rev\` on $(date -u +%Y-%m-%d): the
node at $rev served a fresh data folder (\`--jwt-secret $secret\`) while the
script uploaded hello 1.0.0 (\`tests/fixtures/hello-contract-0.1.0-before-secrets.wasm\`),
pointed \`hello@stable\` at it, created the schedules \`greet\` (cron
\`*/5 * * * *\`, Europe/London, following \`hello@stable\`) and \`paused\`
(every hour, paused), ran hello once ad hoc (input \`{"name": "Ada"}\`,
succeeded) and set the secret \`PARTNER_TOKEN\` = \`fixture-secret-value\`,
all for tenant \`acme\`. \`secrets-key\` is that folder's development key
(a test key, nothing else uses it).
MADE
ls -l "$out"
