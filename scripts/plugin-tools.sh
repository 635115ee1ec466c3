#!/usr/bin/env bash
# Installs the pinned tools that build Python and JavaScript plugins, as the
# tests need them (tests/src/langs.rs runs this; so can you):
#   - componentize-py, pinned in sdk/python/requirements.txt, into the venv
#     target/tools/py;
#   - the JavaScript toolchain (ComponentizeJS, esbuild), pinned by
#     sdk/js/package-lock.json, into sdk/js/node_modules with `npm ci`.
# Both come from their registries (PyPI, npm). Each step is skipped when what
# it installs is already there at the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
# One install at a time (two test processes may start it together).
mkdir -p target
exec 9>target/plugin-tools.lock
flock 9

venv=target/tools/py
requirements=sdk/python/requirements.txt
if ! cmp -s "$requirements" "$venv/.installed-from" 2>/dev/null; then
    echo "plugin-tools: installing componentize-py into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.installed-from"
fi

lock=sdk/js/package-lock.json
if ! cmp -s "$lock" sdk/js/node_modules/.installed-from 2>/dev/null; then
    echo "plugin-tools: installing the JavaScript toolchain into sdk/js/node_modules" >&2
    npm ci --prefix sdk/js --silent --no-audit --no-fund
    cp "$lock" sdk/js/node_modules/.installed-from
fi
