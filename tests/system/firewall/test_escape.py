"""The app (uid 1000) tries every way out of the room; the same suite runs against both backends."""

from __future__ import annotations

import pytest

from .conftest import (
    APP_PORT,
    EGRESS,
    METADATA,
    OUTSIDE_V4,
    OUTSIDE_V6,
    ROOM_V4,
    ROOM_V6,
    SIDECAR_PORT,
    make_spec,
)

pytestmark = pytest.mark.root


@pytest.fixture
def egress_room(room, backend):
    room.firewall(backend, make_spec(EGRESS)).apply()
    return room


@pytest.fixture
def closed_room(room, backend):
    room.firewall(backend, make_spec()).apply()
    return room


def refused(result: dict) -> bool:
    return not result["ok"] and result["error"] == "ECONNREFUSED"


def eperm(result: dict) -> bool:
    return not result["ok"] and result["error"] == "EPERM"


@pytest.mark.parametrize(("port", "proxy_port"), [(80, 15002), (443, 15002), (5432, 15003), (53, 15003)])
def test_allowed_tcp_lands_at_the_proxy_with_its_original_destination(egress_room, port, proxy_port):
    result = egress_room.attack("tcp", OUTSIDE_V4, str(port))
    assert result == {"ok": True, "banner": f"proxy:{proxy_port} original={OUTSIDE_V4}:{port}"}
    assert egress_room.proxy[proxy_port].seen[0]["original"] == f"{OUTSIDE_V4}:{port}"
    assert egress_room.outside_saw_nothing()


def test_metadata_endpoint_is_never_reached(egress_room):
    # Port 80 is an allowed HTTP port, so the connection lands at the HTTP proxy (which checks the host
    # name); any other port is reset.
    assert egress_room.attack("tcp", METADATA, "80")["banner"] == f"proxy:15002 original={METADATA}:80"
    assert refused(egress_room.attack("tcp", METADATA, "22"))
    assert eperm(egress_room.attack("udp", METADATA, "53"))
    assert egress_room.outside_saw_nothing()


def test_tcp_to_a_port_nobody_allowed_is_reset(egress_room):
    assert refused(egress_room.attack("tcp", OUTSIDE_V4, "22"))
    # A tcp rule allows one ip:port, not the port everywhere.
    assert refused(egress_room.attack("tcp", METADATA, "5432"))
    assert egress_room.outside_saw_nothing()


def test_sidecars_on_loopback_are_out_of_reach(egress_room):
    assert refused(egress_room.attack("tcp", "127.0.0.1", str(SIDECAR_PORT)))
    assert refused(egress_room.attack("tcp", "::1", str(SIDECAR_PORT)))
    assert not egress_room.sidecar.seen


@pytest.mark.parametrize("egress", [None, EGRESS], ids=["no-network", "egress"])
def test_only_the_sidecar_apis_the_contract_lists_are_reachable(room, backend, egress):
    room.firewall(backend, make_spec(egress, sidecar_apis=("governance",))).apply()
    assert refused(room.attack("tcp", "127.0.0.1", str(SIDECAR_PORT)))  # skr (8284) is not listed
    assert not room.sidecar.seen
    room.firewall(backend, make_spec(egress, sidecar_apis=("skr",))).apply()
    assert room.attack("tcp", "127.0.0.1", str(SIDECAR_PORT))["ok"]
    assert len(room.sidecar.seen) == 1
    # Only on IPv4 loopback: the same port elsewhere is still out of reach.
    assert refused(room.attack("tcp", "::1", str(SIDECAR_PORT)))
    assert refused(room.attack("tcp", OUTSIDE_V4, str(SIDECAR_PORT)))
    assert room.outside_saw_nothing()


def test_ipv4_mapped_ipv6_addresses_are_ipv4(egress_room):
    # An AF_INET6 socket to ::ffff:a.b.c.d sends IPv4 packets: the IPv4 rules apply.
    mapped = f"::ffff:{OUTSIDE_V4}"
    assert egress_room.attack("tcp", mapped, "80")["banner"] == f"proxy:15002 original={OUTSIDE_V4}:80"
    assert refused(egress_room.attack("tcp", mapped, "22"))
    assert eperm(egress_room.attack("udp", mapped, "53"))
    assert egress_room.outside_saw_nothing()


def test_udp_and_dns_are_dropped(egress_room):
    for host in (OUTSIDE_V4, OUTSIDE_V6, "127.0.0.1"):
        assert eperm(egress_room.attack("udp", host, "53")), host
    assert not egress_room.outside_udp.seen


def test_ipv6_goes_nowhere(egress_room):
    for port in ("80", "443", "5432"):
        assert refused(egress_room.attack("tcp", OUTSIDE_V6, port))
    assert eperm(egress_room.attack("udp", OUTSIDE_V6, "53"))
    assert egress_room.outside_saw_nothing()


def test_icmp_is_dropped(egress_room):
    # The ping socket opens (ping_group_range allows it): the echo itself must not leave. IPv4 reports
    # the drop as EPERM; an IPv6 ping socket's send returns before the drop, so nothing ever answers.
    for host in (OUTSIDE_V4, METADATA):
        result = egress_room.attack("ping", host)
        assert eperm(result) and result["stage"] == "send", (host, result)
    result = egress_room.attack("ping", OUTSIDE_V6)
    assert not result["ok"] and result["stage"] == "send"
    assert not egress_room.outside_icmp.seen


def test_raw_sockets_and_route_changes_are_refused(egress_room):
    for family in ("inet", "inet6", "packet"):
        assert eperm(egress_room.attack("raw", family)), family
    before = egress_room.routes()
    result = egress_room.attack("route", "replace", "default", "via", OUTSIDE_V4, "dev", "veth-room", "metric", "1")
    assert not result["ok"] and "Operation not permitted" in result["error"]
    assert not egress_room.attack("route", "add", f"{OUTSIDE_V4}/32", "dev", "veth-room")["ok"]
    assert egress_room.routes() == before


def test_no_network_mode_resets_every_connection(closed_room):
    for host, port in ((OUTSIDE_V4, "80"), (OUTSIDE_V4, "443"), (METADATA, "80"), (OUTSIDE_V6, "80"),
                       ("127.0.0.1", "15002"), ("127.0.0.1", "15003")):
        assert refused(closed_room.attack("tcp", host, port)), (host, port)
    assert eperm(closed_room.attack("udp", OUTSIDE_V4, "53"))
    assert not any(r.seen for p, r in closed_room.proxy.items() if p != 15001)
    assert closed_room.outside_saw_nothing()


def test_every_uid_but_the_sidecars_is_confined(closed_room):
    assert refused(closed_room.attack("tcp", OUTSIDE_V4, "22", uid=1234))
    assert refused(closed_room.attack("tcp", OUTSIDE_V4, "22", uid=65534))
    assert closed_room.outside_saw_nothing()


def test_sidecars_uid_0_is_exempt(closed_room):
    assert closed_room.attack("tcp", OUTSIDE_V4, "22", uid=None) == {"ok": True, "banner": "outside:22 original=None"}
    result = closed_room.attack("tcp", OUTSIDE_V6, "443", uid=None)
    assert result.get("banner", "").startswith("outside:443"), result
    assert closed_room.attack("udp", OUTSIDE_V4, "53", uid=None)["ok"]
    for host in (OUTSIDE_V4, OUTSIDE_V6):
        assert closed_room.attack("ping", host, uid=None)["ok"], host
    assert closed_room.outside_tcp[22].seen and closed_room.outside_tcp[443].seen
    assert len(closed_room.outside_icmp.wait_seen(2)) == 2


def test_inbound_reaches_the_app_only_through_the_proxy(closed_room):
    # The app listens on its endpoint port and on a port of its own choosing (a covert channel: an
    # outside observer could read which ports answer).
    with closed_room.app("serve", str(APP_PORT), ready_port=APP_PORT), \
         closed_room.app("serve", "9999", ready_port=9999):
        outside = closed_room.from_outside("tcp", ROOM_V4, str(APP_PORT))
        assert outside == {"ok": True, "banner": f"proxy:15001 original={ROOM_V4}:{APP_PORT}"}
        # The inbound proxy (uid 0) reaches the app over loopback, and the app's answers get back.
        assert closed_room.attack("tcp", "127.0.0.1", str(APP_PORT), uid=None)["banner"] == f"app on port {APP_PORT}"
        # Nothing from outside reaches the app's own port: no SYN-ACK, no RST, no answer.
        hidden = closed_room.from_outside("tcp", ROOM_V4, "9999")
        assert not hidden["ok"] and hidden["error"] == "TimeoutError"
        assert not closed_room.from_outside("tcp", ROOM_V6, str(APP_PORT))["ok"]


def test_the_same_attacks_fail_inside_a_podman_container(egress_room, attacker_image):
    route = ["route", "replace", "default", "via", OUTSIDE_V4, "dev", "veth-room", "metric", "1"]
    landing = [["tcp", OUTSIDE_V4, "80"]]
    reset = [["tcp", OUTSIDE_V4, "22"], ["tcp", METADATA, "22"], ["tcp", OUTSIDE_V6, "443"],
             ["tcp", "127.0.0.1", str(SIDECAR_PORT)]]
    forbidden = [["udp", OUTSIDE_V4, "53"], ["udp", OUTSIDE_V6, "53"], ["ping", OUTSIDE_V4], ["raw", "inet"]]
    attacks = landing + reset + forbidden + [route]
    results = egress_room.attack_in_container(attacker_image, attacks)
    assert len(results) == len(attacks)
    by_attack = {" ".join(a): r for a, r in zip(attacks, results, strict=True)}
    assert results[0] == {"ok": True, "banner": f"proxy:15002 original={OUTSIDE_V4}:80"}
    for attack in reset:
        assert refused(by_attack[" ".join(attack)]), (attack, by_attack[" ".join(attack)])
    for attack in forbidden:
        assert eperm(by_attack[" ".join(attack)]), (attack, by_attack[" ".join(attack)])
    assert "Operation not permitted" in results[-1]["error"]
    assert egress_room.outside_saw_nothing() and not egress_room.sidecar.seen
