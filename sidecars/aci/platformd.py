"""The simulator's background process for one group: what stays up while the group runs.

It serves the simulated SEV-SNP report source (HOST_DATA = sha256 of the template's ccePolicy) on the
socket in the privileged containers' security-context directory, and relays the stand-ins' loopback
ports into the group's network namespace (sidecars.localroom.forward), so the spec's
https://127.0.0.1:PORT endpoints are the same inside the group as outside. SIGTERM stops both.

    python -m sidecars.aci.platformd STATE_DIR
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from ..attestation.mock import MockPlatform
from ..attestation.simulated import ReportServer
from ..localroom.forward import serve
from .platform import provider, socket_path
from .state import GroupState

log = logging.getLogger("ccr.aci.platformd")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sidecars.aci.platformd STATE_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = GroupState.load(Path(args[0]))
    server = ReportServer(socket_path(state.privileged_context),
                          provider(MockPlatform.load(state.mock_platform_dir), state.host_data))
    server.start()
    log.info("SEV-SNP report source on %s, HOST_DATA %s", server.server_address, state.host_data)
    try:
        asyncio.run(serve(state.netns, state.forwarded_ports, state.daemon_ready))
    finally:
        server.shutdown()
        server.server_close()
        socket_path(state.privileged_context).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
