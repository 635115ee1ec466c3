#!/bin/sh
# Build a Python task plugin into a component:
#   sdk/python/build-plugin.sh PLUGIN_DIR OUT.wasm [MODULE]
# PLUGIN_DIR holds the app module (MODULE, default `app`) and anything it
# imports; the SDK (this folder) is added to the path. componentize-py
# generates the `wit_world` bindings from the contract's WIT as it builds,
# so none are kept in the tree. Set COMPONENTIZE_PY to choose the tool
# (default: componentize-py on PATH; `pip install -r sdk/python/requirements.txt`).
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 PLUGIN_DIR OUT.wasm [MODULE]" >&2
    exit 2
fi
sdk=$(cd "$(dirname "$0")" && pwd)
# The contract: sdk/wit (also reachable as wit/ at the repository root).
if [ -d "$sdk/../wit" ]; then wit=$sdk/../wit; else wit=$sdk/../../wit; fi
plugin=$(cd "$1" && pwd)
out=$2
module=${3:-app}
tool=${COMPONENTIZE_PY:-componentize-py}
mkdir -p "$(dirname "$out")"
# -p: only these folders are bundled (not the build machine's site-packages).
exec "$tool" -q -d "$wit" -w task componentize \
    -p "$plugin" -p "$sdk" "$module" -o "$out"
