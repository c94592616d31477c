"""`application.loopback_tcp` (Spark's JVM and its Python driver talk over TCP on 127.0.0.1): the app reaches
listeners in the room's app loopback range and nothing else it did not reach before; the sidecars stay out of
reach; the room's ephemeral range is the app's range, and verify notices when it is not."""

from __future__ import annotations

import pytest

from sidecars.firewall import EPHEMERAL_RANGE
from sidecars.firewall.model import APP_LOOPBACK_PORTS
from sidecars.firewall.netns import run_in_netns
from sidecars.spec import parse_spec

from .conftest import OUTSIDE_V4, SIDECAR_PORT, VARIABLES, listen, spec_data

pytestmark = pytest.mark.root

IN_RANGE = 62000


def loopback_spec(on: bool = True):
    data = spec_data()
    data["application"]["loopback_tcp"] = on
    return parse_spec(data, variables=VARIABLES)


def refused(result: dict) -> bool:
    return not result["ok"] and result["error"] == "ECONNREFUSED"


def test_the_app_reaches_its_own_range_and_still_no_sidecar(room, backend):
    own = listen(room.name, "own", "127.0.0.1", IN_RANGE)
    try:
        room.firewall(backend, loopback_spec(on=False)).apply()
        assert refused(room.attack("tcp", "127.0.0.1", str(IN_RANGE)))  # off: loopback is closed as before
        firewall = room.firewall(backend, loopback_spec())
        firewall.apply()
        assert firewall.verify().ok
        assert room.attack("tcp", "127.0.0.1", str(IN_RANGE))["ok"]
        assert len(own.seen) == 1
        # the attacks that matter: the sidecars, the ports just outside the range, IPv6 loopback, the outside
        assert refused(room.attack("tcp", "127.0.0.1", str(SIDECAR_PORT)))
        assert refused(room.attack("tcp", "127.0.0.1", str(APP_LOOPBACK_PORTS[0] - 1)))
        assert refused(room.attack("tcp", "::1", str(IN_RANGE)))
        assert refused(room.attack("tcp", OUTSIDE_V4, str(IN_RANGE)))
        assert not room.sidecar.seen and room.outside_saw_nothing()
    finally:
        own.close()


def test_the_rooms_ephemeral_range_is_the_apps_and_verify_notices_a_change(room, backend):
    firewall = room.firewall(backend, loopback_spec())
    firewall.apply()

    def read() -> str:
        with open(EPHEMERAL_RANGE) as handle:
            return handle.read().split()

    def widen() -> None:
        with open(EPHEMERAL_RANGE, "w") as handle:
            handle.write("32768 65535\n")

    assert run_in_netns(room.name, read) == [str(port) for port in APP_LOOPBACK_PORTS]
    run_in_netns(room.name, widen)  # a listener on port 0 could now land outside the app's range
    report = firewall.verify()
    assert not report.ok and any("ephemeral port range" in d for d in report.differences), report.differences
