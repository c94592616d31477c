"""Run the real proxy (Envoy via sidecars.proxy.ProxyRuntime) inside the room's namespace for the joint
test: started as `ip netns exec ROOM python proxy_in_room.py SPEC RUN_DIR READY_FILE`, so Envoy's
listeners and its readiness checks live in the room. Runs until SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from sidecars.proxy.model import model_from_spec
from sidecars.proxy.runtime import ProxyRuntime, plan
from sidecars.spec import load_spec


def main(spec_path: str, run_dir: str, ready_file: str) -> None:
    spec = load_spec(spec_path, variables=json.loads(Path(run_dir, "variables.json").read_text()))
    model = plan(model_from_spec(spec, inbound_tls=None))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with ProxyRuntime(model, run_dir) as proxy:
        Path(ready_file).write_text(json.dumps(proxy.ports.__dict__))
        while not stop:
            signal.pause()


if __name__ == "__main__":
    main(*sys.argv[1:4])
