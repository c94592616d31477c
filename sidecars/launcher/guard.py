"""The app's guard: a small process the launcher starts beside each app container, which removes the
container if the launcher dies.

The launcher is the app's only supervisor. `podman run` hands the container to conmon, so a launcher that
is killed (SIGKILL, OOM, a crash) would leave the app running with nobody to stop it when another sidecar
dies or consent is revoked. The guard holds the read end of a pipe whose write end only the launcher
holds: end of file without the launcher's "done" means the launcher is gone, and the guard removes the app
container, then audits that through governance (or, if governance does not acknowledge, says so in the
launcher's log, which it shares). It runs in a session of its own, so a signal to the launcher's process
group does not take it along.

    python -m sidecars.launcher.guard --container NAME --app APP [--governance-url URL --token-file F]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..common.errors import CcrError
from ..common.governance_client import GovernanceClient
from ..common.room import read_sidecar_token
from .podman import Podman

#: what the launcher writes before it closes the pipe when the app's end was its own doing
RELEASE = b"done\n"


def guard(container: str, app: str, governance_url: str | None, token_file: Path | None) -> int:
    received = b""
    while chunk := os.read(0, 64):
        received += chunk
    if received.endswith(RELEASE):
        return 0
    print(f"guard: the launcher is gone while the app ran: removing container {container}", file=sys.stderr,
          flush=True)
    try:
        Podman().remove_container(container)
    except CcrError as exc:
        print(f"guard: cannot remove {container}: {exc}", file=sys.stderr, flush=True)
        return 1
    if governance_url:
        try:
            token = read_sidecar_token(token_file)
            with GovernanceClient(governance_url, scope="launcher", token=token, timeout=10) as gov:
                gov.audit({"step": "launcher-lost", "app": app, "container": container, "app_stopped": True})
        except CcrError as exc:
            print(f"guard: the launcher's loss is NOT audited in CGS ({exc}): recorded only here", file=sys.stderr,
                  flush=True)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecars.launcher.guard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--container", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--governance-url")
    parser.add_argument("--token-file", type=Path)
    args = parser.parse_args(argv)
    return guard(args.container, args.app, args.governance_url, args.token_file)


if __name__ == "__main__":
    sys.exit(main())
