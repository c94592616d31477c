"""The firewall sidecar: confines the app's network to the proxy, in IPv4 and IPv6.

    from sidecars.firewall import Firewall
    firewall = Firewall.from_spec(spec, layout, netns="ccr-room")   # backend="nftables" (default) or "iptables"
    firewall.apply()                    # idempotent, atomic (nftables)
    firewall.require_in_force()         # raises FirewallNotInForce naming every difference
    firewall.clean()

`netns=None` acts on the caller's own network namespace (the sidecar runs inside the room's). The rule
model and its rendering from the spec are in `model.py`; the backends in `nft.py` and `iptables.py`.
"""

from __future__ import annotations

import time
from typing import Protocol

from opentelemetry import trace

from ..common.errors import ConfigError
from ..common.firewall_client import FirewallNotInForce, VerifyReport
from ..common.otel import step_span
from ..common.room import RoomLayout
from ..spec import CleanRoomSpec
from .model import (
    APP_LOOPBACK_PORTS,
    ROOT_UID,
    FirewallConfig,
    Rule,
    RuleSet,
    config_from_spec,
    render,
    rules_from_spec,
)
from .netns import run_in_netns

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "Firewall", "FirewallConfig", "FirewallNotInForce", "ROOT_UID", "Rule",
    "RuleSet", "VerifyReport", "config_from_spec",
    "clean_rules", "render", "rules_from_spec", "show_rules",
]

BACKENDS = ("nftables", "iptables")
DEFAULT_BACKEND = "nftables"
_tracer = trace.get_tracer("ccr.firewall")
#: per network namespace: read and written from inside the room's
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_range() -> tuple[int, int]:
    with open(EPHEMERAL_RANGE) as handle:
        low, high = handle.read().split()
    return int(low), int(high)


def _reserve_app_loopback_range() -> None:
    """The room's ephemeral ports become the app's loopback range, so a listener on port 0 (Spark's, py4j's)
    lands where the app may connect; the sidecars listen on fixed ports outside it."""
    with open(EPHEMERAL_RANGE, "w") as handle:
        handle.write(f"{APP_LOOPBACK_PORTS[0]} {APP_LOOPBACK_PORTS[1]}\n")


class Backend(Protocol):
    name: str

    def apply(self, ruleset: RuleSet) -> None: ...
    def clean(self) -> bool: ...
    def show(self) -> str: ...
    def differences(self, ruleset: RuleSet) -> list[str]: ...


def _backend(name: str) -> Backend:
    # Created inside the target namespace: their netlink / x_tables sockets belong to it.
    if name == "nftables":
        from .nft import NftablesBackend  # lazy: only the chosen backend's bindings load

        return NftablesBackend()
    if name == "iptables":
        from .iptables import IptablesBackend  # lazy: python-iptables takes 380 ms to import, needs libiptc

        return IptablesBackend()
    raise ConfigError(f"unknown firewall backend {name!r}; choose one of: {', '.join(BACKENDS)}")


class Firewall:
    """A rule set bound to a backend and a network namespace."""

    def __init__(self, ruleset: RuleSet, *, backend: str = DEFAULT_BACKEND, netns: str | None = None):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown firewall backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.ruleset = ruleset
        self.backend = backend
        self.netns = netns

    @classmethod
    def from_spec(cls, spec: CleanRoomSpec, layout: RoomLayout, *, backend: str = DEFAULT_BACKEND,
                  netns: str | None = None, exempt_uids: tuple[int, ...] = (ROOT_UID,),
                  open_ports: tuple[int, ...] = (), room_addresses: tuple[str, ...] = ()) -> Firewall:
        return cls(rules_from_spec(spec, layout, exempt_uids=exempt_uids, open_ports=open_ports,
                                   room_addresses=room_addresses), backend=backend, netns=netns)

    def _in_netns(self, operation):
        return run_in_netns(self.netns, lambda: operation(_backend(self.backend)))

    def apply(self) -> float:
        """Put the rules in force (replacing ours, never touching others').

        Returns the milliseconds from opening the backend to the rules being in force; closing the
        backend's netlink socket afterwards (measured ~10 ms, after the commit) is not part of it.
        """
        def timed_apply() -> float:
            started = time.perf_counter()
            backend = _backend(self.backend)
            if self.ruleset.config.app_loopback:
                _reserve_app_loopback_range()
            backend.apply(self.ruleset)
            elapsed = (time.perf_counter() - started) * 1000
            del backend  # closing its socket happens after the rules are in force
            return elapsed

        with step_span(_tracer, "firewall.apply", backend=self.backend, netns=self.netns or "") as span:
            elapsed = run_in_netns(self.netns, timed_apply)
            span.set_attribute("apply_ms", elapsed)
            return elapsed

    def verify(self) -> VerifyReport:
        """Compare what is in force with what the spec demands, rule by rule."""
        with step_span(_tracer, "firewall.verify", backend=self.backend, netns=self.netns or "") as span:
            differences = self._in_netns(lambda b: b.differences(self.ruleset))
            if self.ruleset.config.app_loopback:
                in_force = run_in_netns(self.netns, _ephemeral_range)
                if in_force != APP_LOOPBACK_PORTS:
                    differences.append(f"the room's ephemeral port range is {in_force[0]}-{in_force[1]}, not the "
                                       f"app's loopback range {APP_LOOPBACK_PORTS[0]}-{APP_LOOPBACK_PORTS[1]}")
            span.set_attribute("differences", len(differences))
            return VerifyReport(self.backend, self.netns, differences)

    def require_in_force(self) -> VerifyReport:
        report = self.verify()
        if not report.ok:
            raise FirewallNotInForce(report.differences)
        return report

    def clean(self) -> bool:
        return clean_rules(self.backend, self.netns)

    def show(self) -> str:
        return show_rules(self.backend, self.netns)

    def describe(self) -> str:
        """What the spec demands, one line per rule."""
        return self.ruleset.describe()


def clean_rules(backend: str = DEFAULT_BACKEND, netns: str | None = None) -> bool:
    """Remove our rules (no spec needed); False when there were none."""
    with step_span(_tracer, "firewall.clean", backend=backend, netns=netns or ""):
        return run_in_netns(netns, lambda: _backend(backend).clean())


def show_rules(backend: str = DEFAULT_BACKEND, netns: str | None = None) -> str:
    """The rules in force, readable (nft syntax, or iptables-save-like for the iptables backend)."""
    return run_in_netns(netns, lambda: _backend(backend).show())
