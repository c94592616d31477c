#!/usr/bin/env bash
# The clean room job demo (`make demo`): see demo.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python examples/cleanroomhello-job/demo.py "$@"
