"""Egress to the room's own address reaches its sidecars the way loopback would. The spec refuses loopback
(test_spec_rules.py); the room's own addresses are known only where it runs, so the firewall refuses them:
in its configuration (CCR_ROOM_ADDRESS, as `ccr room up` sets it) and at start (its namespace's interfaces),
before any rule is applied. Attacked here with the addresses of the machine the test runs on."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.common.room import Placement, Room
from sidecars.firewall.__main__ import run
from sidecars.firewall.netns import local_addresses
from sidecars.firewall.sidecar import FirewallSidecarConfig, configure
from sidecars.room.registry import REGISTRY, layout
from sidecars.spec import parse_spec

LOCAL = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
         "storage_url": "https://127.0.0.1:9003/devstoreaccount1", "keyvault_url": "https://127.0.0.1:9004"}


def spec_with_egress_to(repo, address: str):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["egress"] = {"allow": [{"host": "api.example.com", "port": 443},
                                {"host": address, "port": REGISTRY.get("skr").port(), "protocol": "tcp"}]}
    return parse_spec(data, variables=LOCAL, base_dir=repo / "examples/cleanroomhello-api")


def own_line(address: str) -> str:
    return (f"egress.allow[1].host: {address} is this room's own address: egress there would reach the room's "
            "sidecars, which the app calls only as its contract's sidecar APIs allow")


def test_the_room_address_it_is_given_is_refused_in_its_configuration(repo):
    spec = spec_with_egress_to(repo, "10.203.7.2")  # a local room's address (sidecars/localroom/netns.py)
    with pytest.raises(SpecError) as info:
        configure(Room(spec, Placement(room_address="10.203.7.2"), layout()))
    assert info.value.problems == [own_line("10.203.7.2")]
    assert configure(Room(spec, Placement(room_address="10.203.8.2"), layout())).room_addresses == ("10.203.8.2",)


def test_the_firewall_refuses_its_namespaces_own_address_at_start(repo):
    """No rule is applied (no root needed): the firewall stops while building its rules."""
    addresses = [a for a in local_addresses(None) if not ipaddress.IPv4Address(a).is_loopback]
    assert "127.0.0.1" in local_addresses(None)
    assert addresses, "this machine has no non-loopback IPv4 address to attack with"
    spec = spec_with_egress_to(repo, addresses[0])
    with pytest.raises(SpecError) as info:
        run(FirewallSidecarConfig(spec=spec, layout=layout(), port=0))
    assert info.value.problems == [own_line(addresses[0])]
