#!/usr/bin/env bash
# The secure key release demo (`make demo`): see demo.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python examples/skr-demo/demo.py "$@"
