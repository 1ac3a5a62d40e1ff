#!/bin/sh
# The runner's -shim-path: our shim on this tree's dtls package.
here="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$here/../..${PYTHONPATH:+:$PYTHONPATH}" exec python3 "$here/shim.py" "$@"
