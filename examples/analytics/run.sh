#!/usr/bin/env bash
# The analytics clean room demo (`make demo-analytics`, root): see demo.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python examples/analytics/demo.py "$@"
