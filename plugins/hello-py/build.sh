#!/bin/sh
# Build this Python plugin into a component: plugins/hello-py/build.sh [OUT.wasm]
# (default target/plugins/python/hello-py.wasm). Needs componentize-py
# (pip install -r sdk/python/requirements.txt); see sdk/python/README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../target/plugins/python/hello-py.wasm}
exec "$here/../../sdk/python/build-plugin.sh" "$here" "$out"
