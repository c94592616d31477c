#!/usr/bin/env bash
# The db-access demo: see demo.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python examples/db-access/demo.py "$@"
