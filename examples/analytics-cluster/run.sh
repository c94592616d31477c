#!/usr/bin/env bash
# The analytics demo's approved query on a cluster of rooms (1 driver + 2 executor rooms on this machine,
# brought up by `ccr room up` of the analytics spec with a cluster section, taken down by `ccr room down`):
# same answer as the single room, the room network's capture holds no clear value, an executor with an
# altered image is refused. Needs root (netns, nftables) and tcpdump. See docs/analytics.md, "A cluster of rooms".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3
PYTHONPATH="$repo" exec "$python" "$here/demo.py"
