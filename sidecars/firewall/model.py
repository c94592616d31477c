"""The firewall's one rule model, rendered from the clean room spec.

Both backends (nftables, python-iptables) render the same `RuleSet`; `verify` compares what is in force
against it rule by rule (each rule carries a stable id, stored with the rule as its comment).

Who is confined: every socket owned by a uid that is not exempt (the sidecars run as uid 0), not only
the app's uid, so a second uid inside the app container gets no more than the app. Packets with no
owning socket (kernel replies, SYN-ACKs) are neither confined nor exempt: both backends let them pass.

What a confined socket may do (IPv4):
- TCP to an allow-listed `tcp` ip:port, and DNS over TCP when the spec asks for it, is redirected to
  the proxy's TCP listener; TCP to a port that an allow-listed `http`/`https` host uses is
  redirected to the proxy's HTTP listener, which checks the host name. The original destination
  stays recoverable with SO_ORIGINAL_DST.
- Replies on connections the inbound proxy opened to the app's ports (over loopback).
- TCP to the room's sidecar APIs on 127.0.0.1 that the spec lists in `application.sidecar_apis` (their
  ports are the registry's: `ccr sidecar list`); none by default.
- With `application.loopback_tcp`: TCP to 127.0.0.1 in `APP_LOOPBACK_PORTS`, the app's own listeners. The
  room's ephemeral port range is set to that range (a listener on port 0 lands there) and no sidecar port
  may be in it, so what the app reaches there is what it opened itself (Spark's JVM and its Python driver).
- Nothing else: other TCP is reset (connects fail fast instead of hanging), everything else (UDP incl.
  DNS, ICMP, raw IP) is dropped, so sends fail with EPERM. IPv6 the same, with no redirect: the proxy
  listens on IPv4, so the app's IPv6 TCP is reset and a client falls back to IPv4 at once.
With no allowed egress (no-network mode) there is no redirect at all: every TCP connect is reset.

Inbound: TCP to the app's endpoint ports is redirected to the proxy's inbound listener. New
connections from outside the room reach only that listener (and `open_ports` for sidecars that must be reached
from outside): otherwise the app could leak data by choosing which ports it listens on, observable from
outside through the kernel's SYN-ACK or RST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..common.errors import SpecError
from ..common.room import RoomLayout
from ..spec import MAX_UID, CleanRoomSpec

DNS_PORT = 53
ROOT_UID = 0
#: the app's own loopback listeners (`application.loopback_tcp`): above Linux's default ephemeral range
#: (32768-60999), so a port another process of the room took from that range (a stand-in's forwarder in a
#: local room) is never in it; the room's net.ipv4.ip_local_port_range is set to it
APP_LOOPBACK_PORTS = (61000, 65535)


class Hook(StrEnum):
    """Where a rule sits. NAT decides where a connection goes, filter decides whether it may."""

    NAT_OUTPUT = "nat-output"
    NAT_PREROUTING = "nat-prerouting"
    FILTER_OUTPUT = "filter-output"
    FILTER_INPUT = "filter-input"

    @property
    def confined(self) -> bool:
        """Output hooks see the sending socket: their rules apply to confined sockets only."""
        return self in (Hook.NAT_OUTPUT, Hook.FILTER_OUTPUT)


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    BOTH = "both"


class Protocol(StrEnum):
    TCP = "tcp"
    ICMP = "icmp"  # ICMP for IPv4, ICMPv6 for IPv6


class Verdict(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    RESET = "reset"  # TCP reset: a connect fails at once with ECONNREFUSED
    REDIRECT = "redirect"


@dataclass(frozen=True)
class Rule:
    """One match → one verdict. Empty fields match anything."""

    id: str
    hook: Hook
    verdict: Verdict
    family: Family = Family.BOTH
    protocol: Protocol | None = None
    daddr: str | None = None  # an address or a network (CIDR)
    dports: tuple[int, ...] = ()
    sports: tuple[int, ...] = ()
    dport_range: tuple[int, int] | None = None  # first and last port, both included
    established: bool = False  # only packets of established (or related) connections
    from_loopback: bool = False  # arrived on lo
    to_port: int | None = None  # the port of a REDIRECT
    why: str = ""

    def __post_init__(self) -> None:
        if (self.verdict is Verdict.REDIRECT) != (self.to_port is not None):
            raise ValueError(f"rule {self.id}: to_port goes with a redirect verdict, and only with it")
        if (self.dports or self.sports or self.dport_range or self.verdict in (Verdict.RESET, Verdict.REDIRECT)) \
                and self.protocol is not Protocol.TCP:
            raise ValueError(f"rule {self.id}: ports, resets and redirects need protocol tcp")
        if self.daddr is not None and self.family is Family.BOTH:
            raise ValueError(f"rule {self.id}: an address belongs to one family")

    def describe(self) -> str:
        """A readable one-liner, used by `show` and by verify's differences."""
        parts = []
        if self.hook.confined:
            parts.append("confined uids")
        if self.family is not Family.BOTH:
            parts.append(self.family.value)
        if self.from_loopback:
            parts.append("from lo")
        if self.protocol is not None:
            parts.append(self.protocol.value)
        if self.daddr:
            parts.append(f"to {self.daddr}")
        if self.dports:
            parts.append("dport " + ",".join(map(str, self.dports)))
        if self.dport_range:
            parts.append(f"dport {self.dport_range[0]}-{self.dport_range[1]}")
        if self.sports:
            parts.append("sport " + ",".join(map(str, self.sports)))
        if self.established:
            parts.append("established")
        verdict = f"redirect to :{self.to_port}" if self.to_port else self.verdict.value
        return f"[{self.hook.value}] {' '.join(parts) or 'all'} → {verdict}"


@dataclass(frozen=True)
class TcpEgress:
    address: str
    port: int


@dataclass(frozen=True)
class FirewallConfig:
    """What the rules are made from (all of it comes from the spec, plus sidecar placement options)."""

    app_uid: int
    #: the proxy's listeners: inbound (clients → app), HTTP and TCP egress (app → allow-listed hosts)
    inbound_port: int
    http_egress_port: int
    tcp_egress_port: int
    exempt_uids: tuple[int, ...] = (ROOT_UID,)
    app_ports: tuple[int, ...] = ()
    http_egress_ports: tuple[int, ...] = ()
    tcp_egress: tuple[TcpEgress, ...] = ()
    dns_over_tcp: bool = False
    open_ports: tuple[int, ...] = ()
    #: loopback ports of the sidecar APIs the app may call (`application.sidecar_apis`)
    sidecar_ports: tuple[int, ...] = ()
    #: the app may connect to its own listeners on 127.0.0.1 in APP_LOOPBACK_PORTS (`application.loopback_tcp`)
    app_loopback: bool = False

    def __post_init__(self) -> None:
        if self.app_uid in self.exempt_uids:
            raise ValueError(f"the app's uid {self.app_uid} cannot be exempt from the firewall")
        if not self.exempt_uids:
            raise ValueError("at least one uid (the sidecars', 0) must be exempt")
        for uid in (self.app_uid, *self.exempt_uids):
            if not 0 <= uid <= MAX_UID:
                raise ValueError(f"uid {uid} is out of range")
        if self.app_loopback:
            low, high = APP_LOOPBACK_PORTS
            room_ports = (self.inbound_port, self.http_egress_port, self.tcp_egress_port, *self.open_ports,
                          *self.sidecar_ports, *self.app_ports)
            inside = sorted({port for port in room_ports if low <= port <= high})
            if inside:
                raise ValueError(f"port(s) {', '.join(map(str, inside))} of the room are in the app's loopback range "
                                 f"{low}-{high}: the app could reach them as its own")

    @property
    def no_network(self) -> bool:
        return not (self.http_egress_ports or self.tcp_egress)


@dataclass(frozen=True)
class RuleSet:
    config: FirewallConfig
    rules: tuple[Rule, ...] = field(default=())

    def in_hook(self, hook: Hook) -> list[Rule]:
        return [r for r in self.rules if r.hook is hook]

    def describe(self) -> str:
        cfg = self.config
        head = [f"confined: every uid except {', '.join(map(str, cfg.exempt_uids))} (the app runs as {cfg.app_uid})",
                "egress: none (no-network mode)" if cfg.no_network else
                "egress: " + ", ".join(
                    [f"http(s) dport {p} → :{cfg.http_egress_port}" for p in cfg.http_egress_ports]
                    + [f"tcp {e.address}:{e.port} → :{cfg.tcp_egress_port}" for e in cfg.tcp_egress]
                    + ([f"dns over tcp → :{cfg.tcp_egress_port}"] if cfg.dns_over_tcp else []))]
        return "\n".join(head + [f"{r.id}: {r.describe()}" for r in self.rules])


def config_from_spec(spec: CleanRoomSpec, layout: RoomLayout, *, exempt_uids: tuple[int, ...] = (ROOT_UID,),
                     open_ports: tuple[int, ...] = (), room_addresses: tuple[str, ...] = ()) -> FirewallConfig:
    """The rules' inputs: the spec, and from the room's layout the proxy's listeners and the ports of the
    sidecar APIs the spec lets the app call.

    `room_addresses` are the room's own: egress there would reach the room's sidecars the way loopback
    would (the proxy connects as uid 0), so it is refused like loopback is in the spec. The spec cannot
    know them; the running room does (CCR_ROOM_ADDRESS, its interfaces)."""
    own = set(room_addresses)
    if any(rule.host in own for rule in spec.egress.allow):
        raise SpecError([f"egress.allow[{i}].host: {rule.host} is this room's own address: egress there would "
                         "reach the room's sidecars, which the app calls only as its contract's sidecar APIs allow"
                         for i, rule in enumerate(spec.egress.allow) if rule.host in own])
    http_ports: set[int] = set()
    tcp: list[TcpEgress] = []
    for rule in spec.egress.allow:
        if rule.protocol == "tcp":
            tcp.append(TcpEgress(rule.host, rule.port))  # an IPv4 address: the spec's rule
        else:
            http_ports.add(rule.port)
    try:
        return FirewallConfig(
            app_uid=spec.application.uid, exempt_uids=tuple(sorted(set(exempt_uids))),
            inbound_port=layout.port("proxy", "inbound"), http_egress_port=layout.port("proxy", "http"),
            tcp_egress_port=layout.port("proxy", "tcp"),
            app_ports=tuple(sorted(e.port for e in spec.endpoints)),
            http_egress_ports=tuple(sorted(http_ports)), tcp_egress=tuple(dict.fromkeys(tcp)),
            dns_over_tcp=spec.egress.dns == "tcp" and bool(spec.egress.allow),
            open_ports=tuple(sorted(set(open_ports))),
            sidecar_ports=layout.sidecar_api_ports(spec.application.sidecar_apis),
            app_loopback=spec.application.loopback_tcp,
        )
    except ValueError as exc:
        raise SpecError([f"application.user: {exc}"]) from None


def render(config: FirewallConfig) -> RuleSet:
    """The rules, in evaluation order within each hook."""
    rules: list[Rule] = []
    tcp, v4 = Protocol.TCP, Family.IPV4
    proxy_ports: list[int] = []

    for egress in config.tcp_egress:
        rules.append(Rule(f"egress-tcp-{egress.address}-{egress.port}", Hook.NAT_OUTPUT, Verdict.REDIRECT,
                          v4, tcp, daddr=egress.address, dports=(egress.port,), to_port=config.tcp_egress_port,
                          why="allow-listed ip:port goes through the TCP proxy"))
    if config.dns_over_tcp and not config.no_network:
        rules.append(Rule("egress-dns-tcp", Hook.NAT_OUTPUT, Verdict.REDIRECT, v4, tcp, dports=(DNS_PORT,),
                          to_port=config.tcp_egress_port, why="DNS over TCP goes through the TCP proxy"))
    if config.tcp_egress or (config.dns_over_tcp and not config.no_network):
        proxy_ports.append(config.tcp_egress_port)
    if config.http_egress_ports:
        rules.append(Rule("egress-http", Hook.NAT_OUTPUT, Verdict.REDIRECT, v4, tcp,
                          dports=config.http_egress_ports, to_port=config.http_egress_port,
                          why="HTTP(S) goes through the HTTP proxy, which checks the host name"))
        proxy_ports.append(config.http_egress_port)

    if proxy_ports:
        rules.append(Rule("to-proxy", Hook.FILTER_OUTPUT, Verdict.ACCEPT, v4, tcp, daddr="127.0.0.1",
                          dports=tuple(sorted(proxy_ports)),
                          why="connections redirected to the proxy's outbound listeners (post-NAT address)"))
    if config.sidecar_ports:
        rules.append(Rule("to-sidecars", Hook.FILTER_OUTPUT, Verdict.ACCEPT, v4, tcp, daddr="127.0.0.1",
                          dports=config.sidecar_ports, why="the sidecar APIs the contract lets the app call"))
    if config.app_loopback:
        rules.append(Rule("to-app-loopback", Hook.FILTER_OUTPUT, Verdict.ACCEPT, v4, tcp, daddr="127.0.0.1",
                          dport_range=APP_LOOPBACK_PORTS,
                          why="the app's own listeners (application.loopback_tcp): the room's ephemeral range"))
    if config.app_ports:
        rules.append(Rule("inbound-replies", Hook.FILTER_OUTPUT, Verdict.ACCEPT, v4, tcp, daddr="127.0.0.0/8",
                          sports=config.app_ports, established=True,
                          why="the app answers the inbound proxy's connections over loopback"))
    rules.append(Rule("tcp-reset", Hook.FILTER_OUTPUT, Verdict.RESET, Family.BOTH, tcp,
                      why="any other TCP fails fast"))
    rules.append(Rule("drop-rest", Hook.FILTER_OUTPUT, Verdict.DROP,
                      why="UDP (DNS too), ICMP, raw IP, IPv6: nothing else leaves"))

    if config.app_ports:
        rules.append(Rule("inbound-app", Hook.NAT_PREROUTING, Verdict.REDIRECT, v4, tcp, dports=config.app_ports,
                          to_port=config.inbound_port, why="clients reach the app only through the inbound proxy"))
    rules.append(Rule("in-loopback", Hook.FILTER_INPUT, Verdict.ACCEPT, from_loopback=True))
    rules.append(Rule("in-established", Hook.FILTER_INPUT, Verdict.ACCEPT, established=True,
                      why="answers to connections the room opened"))
    rules.append(Rule("in-proxy", Hook.FILTER_INPUT, Verdict.ACCEPT, Family.BOTH, tcp,
                      dports=tuple(sorted({config.inbound_port, *config.open_ports})),
                      why="the inbound proxy (and sidecars that must be reached from outside)"))
    rules.append(Rule("in-icmp", Hook.FILTER_INPUT, Verdict.ACCEPT, protocol=Protocol.ICMP,
                      why="ping and IPv6 neighbour discovery, answered by the kernel"))
    rules.append(Rule("in-drop", Hook.FILTER_INPUT, Verdict.DROP,
                      why="no other inbound connection: the app's listening ports stay invisible"))
    return RuleSet(config, tuple(rules))


def rules_from_spec(spec: CleanRoomSpec, layout: RoomLayout, *, exempt_uids: tuple[int, ...] = (ROOT_UID,),
                    open_ports: tuple[int, ...] = (), room_addresses: tuple[str, ...] = ()) -> RuleSet:
    return render(config_from_spec(spec, layout, exempt_uids=exempt_uids, open_ports=open_ports,
                                   room_addresses=room_addresses))
