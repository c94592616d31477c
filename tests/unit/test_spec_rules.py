"""Every rule a sidecar used to refuse at start is the spec's, so `ccr spec validate` and the room agree.

`RULES` lists them: each is a minimal hostile spec (the base spec below with one change), the line
`ccr spec validate` prints for it, where the room refused it before, and the sidecar's start-up derivation
(the function the sidecar calls on the spec at start). For each rule:

(a) the real CLI (`python -m sidecars spec validate FILE --endpoints FILE`) prints that line, naming the
    field, and exits 1;
(b) the sidecar's start-up, from the spec file (`--spec FILE`) and from the room (`Room.from_environment`
    with the resolved spec in `CCR_SPEC`, as in a container), fails while loading the spec, with the same
    line: its derivation never sees it.

The base spec passes all of it (a positive control: the derivations below are real code that runs).
`KEPT` lists what a sidecar still refuses on purpose, each with why; the guard at the end scans the
sidecars' code for refusals that name a spec field, so a new one has to be added there or moved here.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from sidecars.common.azure_clients import account_name_of
from sidecars.common.errors import ConfigError, SpecError
from sidecars.common.room import SPEC_ENV, Room
from sidecars.common.tls import LocalCA
from sidecars.common.untrusted import contained_path_problem
from sidecars.firewall.model import config_from_spec
from sidecars.launcher.policy import POLICY_FILE as CONTAINER_POLICY
from sidecars.launcher.policy import ContainerPolicy, build_launch
from sidecars.proxy.envoy import validate_bootstrap, write_bootstrap
from sidecars.proxy.model import model_from_spec
from sidecars.proxy.runtime import plan
from sidecars.room.group import canonical_spec_json, render_group
from sidecars.room.registry import layout
from sidecars.skr.destinations import Destinations
from sidecars.spec import MAX_SPEC_JSON_BYTES, Application, AppMount, CleanRoomSpec, load_spec, parse_spec
from sidecars.telemetry.__main__ import _sink_configs, config_from_args
from sidecars.telemetry.__main__ import build_parser as telemetry_parser

REPO = Path(__file__).resolve().parents[2]
API = REPO / "examples" / "cleanroomhello-api"
POLICY_FILE = "allow-get-hello.rego"
LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}
VAR_ARGS = [arg for name, value in LOCAL.items() for arg in ("--var", f"{name}={value}")]


def base_data() -> dict[str, Any]:
    """The API example with something of everything a rule is about: a datasource, both sinks, egress of
    each kind, skr and an extra vault for the app."""
    data = yaml.safe_load((API / "spec.yaml").read_text())
    job = yaml.safe_load((REPO / "examples" / "cleanroomhello-job" / "spec.yaml").read_text())
    data["datasources"] = [job["datasources"][0]]
    data["contract"]["members"].append("publisher")
    sink = copy.deepcopy(data["telemetry"]["log_sink"])
    sink["store"]["container"] = "consumer-telemetry"
    sink["encryption"]["key"]["dek_secret_name"] = "consumer-telemetry-dek"
    data["telemetry"]["telemetry_sink"] = sink
    data["egress"] = {"allow": [{"host": "api.example.com", "port": 443, "protocol": "https"},
                                {"host": "10.0.0.7", "port": 5432, "protocol": "tcp"}]}
    data["application"]["sidecar_apis"] = ["skr"]
    data["application"]["key_vaults"] = ["${keyvault_url}"]
    return data


# --- the sidecars' start-up derivations, each from the spec file as the sidecar gets it (--spec FILE) -----

Start = Callable[[Path], object]


def _load(spec_file: Path) -> CleanRoomSpec:
    return load_spec(spec_file, variables=LOCAL)


def firewall_start(spec_file: Path) -> object:
    return config_from_spec(_load(spec_file), layout())


def proxy_start(spec_file: Path) -> object:
    """The proxy's model, planned, rendered and checked by the real Envoy (what ProxyRuntime.start does)."""
    tls = LocalCA.create(spec_file.parent / "ca").issue_server_cert("room")
    model = plan(model_from_spec(_load(spec_file), inbound_tls=tls))
    validate_bootstrap(write_bootstrap(model, spec_file.parent / "envoy.json"))
    return model


def telemetry_start(spec_file: Path) -> object:
    args = telemetry_parser().parse_args(["--spec", str(spec_file), "--governance-url", "http://127.0.0.1:8300",
                                          *VAR_ARGS])
    return _sink_configs(config_from_args(args))


def skr_start(spec_file: Path) -> object:
    return Destinations.from_spec(_load(spec_file))


def volumes_start(spec_file: Path) -> object:
    """What each mount process (and a sink's export) asks its storage client: the account's name."""
    return [account_name_of(str(target.store.account_url)) for target in _load(spec_file).blob_targets()]


def room_start(spec_file: Path) -> object:
    """What `ccr room up` and every rendering hand each sidecar: the resolved spec, in CCR_SPEC."""
    return canonical_spec_json(_load(spec_file))


def launcher_violations(spec: CleanRoomSpec) -> list[str]:
    """What the launcher's container policy says of the spec's app, launched as the launcher launches it, its
    local image the one the spec pins."""
    app = render_group(spec).app
    launch = build_launch(spec, app, mount_root=Path("/run/ccr/mnt"), netns="ccr-x", container_name="app")
    return ContainerPolicy(spec, app).violations(launch, spec.application.image.partition("@")[2])


def launcher_start(spec_file: Path) -> object:
    """The launcher's check before it runs the app (policies/container.rego)."""
    violations = launcher_violations(_load(spec_file))
    assert violations == [], violations
    return violations


STARTS: tuple[Start, ...] = (firewall_start, proxy_start, telemetry_start, skr_start, volumes_start, room_start,
                             launcher_start)


# --- the rules ----------------------------------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A change: `path` (dots and [i]) set to `value`."""
    def change(data: dict) -> None:
        *parents, last = re.findall(r"[^.\[\]]+", path)
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return change


def _append(path: str, item: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target: Any = data
        for part in path.split("."):
            target = target[part]
        target.append(copy.deepcopy(item))
    return change


HUGE_POLICY = (API / POLICY_FILE).read_text() + "# " + "x" * MAX_SPEC_JSON_BYTES + "\n"
LONG_HOST = "a" * 252 + ".com"  # 256 characters: more than a TLS server name holds
NO_IPV4 = ("(the TCP proxy matches the destination address; reach a host name with an http or https rule)")
HOST_NAME = "(letters, digits, '-', '_' and '.', at most 253 characters)"
SINK_CSE = "exported telemetry and logs leave the room only as ciphertext"
SKR_PORT, GOVERNANCE_PORT = layout().port("skr"), layout().port("governance")
LOOPBACK = "loopback, the room itself: its sidecars listen there (let the app call them with application.sidecar_apis)"
LOOPBACK_NAME = ("the name means the room itself (loopback; let the app call the sidecars with "
                 "application.sidecar_apis)")
LINK_LOCAL = "link-local: the platform's metadata service (169.254.169.254) and nothing else the room needs"
SHORT_FORM = "is an IPv4 address in a short or numeric form: write it as a.b.c.d"
A_HOLE = "nowhere: the proxy (uid 0, not confined) connected there for the app"
UNPINNED = ("is not pinned by digest: use REPO@sha256:<64 lower-case hex digits> (the launcher's container policy, "
            "rule image_pinned; `ccr images build NAME --pin SPEC` writes it)")
OUTSIDE_POLICY = "package envoy.authz\n\ndefault allow := true\n"
SYSTEM_PATH = "a system path of the app's image (spec.SYSTEM_PATHS)"


@dataclass(frozen=True)
class Rule:
    id: str
    change: Callable[[dict], None]
    #: the line `ccr spec validate` prints after "FILE: " (a regular expression when `regex`)
    line: str
    #: where the room refused such a spec before the rule was the spec's
    refused_before: str
    starts: tuple[Start, ...]
    regex: bool = False
    #: files beside the spec that differ from the example's (name, text)
    files: tuple[tuple[str, str], ...] = ()


RULES = [
    Rule("telemetry sink not CSE", _set("telemetry.telemetry_sink.encryption", {"mode": "SSE"}),
         f"telemetry.telemetry_sink.encryption.mode: must be CSE, not SSE: {SINK_CSE}",
         "telemetry: __main__._sink_configs (ConfigError)", (telemetry_start,)),
    Rule("log sink not CSE", _set("telemetry.log_sink.encryption.mode", "CPK"),
         f"telemetry.log_sink.encryption.mode: must be CSE, not CPK: {SINK_CSE}",
         "telemetry: __main__._sink_configs (ConfigError)", (telemetry_start,)),
    Rule("tcp egress to a host name", _set("egress.allow[1].host", "db.example.com"),
         f"egress.allow[1].host: a tcp rule needs an IPv4 address, not 'db.example.com' {NO_IPV4}",
         "firewall: model.config_from_spec (SpecError); proxy: model.egress_routes (ConfigError)",
         (firewall_start, proxy_start)),
    Rule("tcp egress to an IPv6 address", _set("egress.allow[1].host", "2001:db8::7"),
         "egress.allow[1].host: a tcp rule needs an IPv4 address, not '2001:db8::7': the app has no IPv6 egress",
         "firewall: model.config_from_spec (SpecError; the proxy accepted it)", (firewall_start, proxy_start)),
    Rule("https egress to an empty host", _set("egress.allow[0].host", ""),
         f"egress.allow[0].host: an https rule needs a host name {HOST_NAME}, not ''",
         "proxy: runtime.ProxyRuntime.start, Envoy (empty socket address)", (proxy_start,)),
    Rule("https egress to a host longer than a server name", _set("egress.allow[0].host", LONG_HOST),
         f"egress.allow[0].host: an https rule needs a host name {HOST_NAME}, not {LONG_HOST!r}",
         "proxy: runtime.ProxyRuntime.start, Envoy (SNI over 255 bytes)", (proxy_start,)),
    Rule("https egress host with a line break", _set("egress.allow[0].host", "api.example.com\nx"),
         f"egress.allow[0].host: an https rule needs a host name {HOST_NAME}, not 'api.example.com\\nx'",
         "proxy: runtime.ProxyRuntime.start, Envoy (virtual host domain pattern)", (proxy_start,)),
    Rule("egress rule listed twice", _append("egress.allow", {"host": "api.example.com", "port": 443}),
         "egress.allow[2].host: api.example.com:443 is already allowed by egress.allow[0]",
         "proxy: runtime.ProxyRuntime.start, Envoy (duplicate cluster)", (proxy_start,)),
    Rule("egress host twice in another case", _append("egress.allow", {"host": "API.example.com", "port": 443}),
         "egress.allow[2].host: API.example.com:443 is already allowed by egress.allow[0]",
         "proxy: runtime.ProxyRuntime.start, Envoy (duplicate virtual host domain)", (proxy_start,)),
    Rule("tcp egress listed twice",
         _append("egress.allow", {"host": "10.0.0.7", "port": 5432, "protocol": "tcp"}),
         "egress.allow[2].host: 10.0.0.7:5432 is already allowed by egress.allow[1]",
         "proxy: runtime.ProxyRuntime.start, Envoy (duplicate cluster)", (proxy_start,)),
    Rule("two endpoints with one name", _append("endpoints", {"name": "hello", "port": 8081}),
         "endpoints[1].name: 'hello' is already used by endpoints[0]",
         "proxy: runtime.ProxyRuntime.start, Envoy (duplicate cluster app_hello)", (proxy_start,)),
    Rule("a policy OPA cannot parse", lambda data: None,
         rf"endpoints\[0\]\.policy_rego: policy {POLICY_FILE} does not compile: 1 error occurred: {POLICY_FILE}:\d+: "
         r"rego_parse_error: [^\n]+", "proxy: runtime.plan_endpoint (RegoPolicyError)", (proxy_start,), regex=True,
         files=((POLICY_FILE, "package envoy.authz\n\nallow if {\n"),)),
    Rule("the attestation service over http", _set("maa_endpoint", "http://maa.example"),
         "maa_endpoint: URL scheme should be 'https'",
         "skr: destinations.Destinations.from_spec (BadRequest: not an https endpoint)", (skr_start,)),
    Rule("a key's vault over http", _set("datasources[0].encryption.key.vault_url", "http://vault.example"),
         "datasources[0].encryption.key.vault_url: URL scheme should be 'https'",
         "skr: destinations.Destinations.from_spec (BadRequest)", (skr_start,)),
    Rule("a key's attestation service over http",
         _set("telemetry.log_sink.encryption.key.maa_endpoint", "http://maa.example"),
         "telemetry.log_sink.encryption.key.maa_endpoint: URL scheme should be 'https'",
         "skr: destinations.Destinations.from_spec (BadRequest)", (skr_start,)),
    Rule("a wrapped DEK's vault over http",
         _set("telemetry.log_sink.encryption.key.secret_vault_url", "http://vault.example"),
         "telemetry.log_sink.encryption.key.secret_vault_url: URL scheme should be 'https'",
         "skr: destinations.Destinations.from_spec (BadRequest)", (skr_start,)),
    Rule("an app's vault over http", _set("application.key_vaults", ["http://vault.example"]),
         "application.key_vaults[0]: URL scheme should be 'https'",
         "skr: destinations.Destinations.from_spec (BadRequest)", (skr_start,)),
    Rule("a store URL naming no account", _set("datasources[0].store.account_url", "https://10.0.0.9:10000"),
         "datasources[0].store.account_url: names no storage account: use https://ACCOUNT.blob.core.windows.net, "
         "or a path-style https://HOST:PORT/ACCOUNT for an IP address or localhost",
         "volumes: the mount process's container_client → azure_clients.account_name_of (ConfigError)",
         (volumes_start,)),
    Rule("a uid the kernel cannot have", _set("application.user", "4294967295:1000"),
         "application.user: a uid or gid is at most 4294967294",
         "firewall: model.FirewallConfig via config_from_spec (SpecError: uid out of range)", (firewall_start,)),
    # --- egress never reaches the room itself or the platform (issue 14)
    Rule("tcp egress to skr on loopback", _set("egress.allow[1]", {"host": "127.0.0.1", "port": SKR_PORT,
                                                                    "protocol": "tcp"}),
         f"egress.allow[1].host: 127.0.0.1 is never an egress destination: {LOOPBACK}", A_HOLE,
         (firewall_start, proxy_start)),
    Rule("tcp egress to governance on another loopback address",
         _set("egress.allow[1]", {"host": "127.0.0.2", "port": GOVERNANCE_PORT, "protocol": "tcp"}),
         f"egress.allow[1].host: 127.0.0.2 is never an egress destination: {LOOPBACK}", A_HOLE,
         (firewall_start, proxy_start)),
    Rule("tcp egress to the metadata service", _set("egress.allow[1].host", "169.254.169.254"),
         f"egress.allow[1].host: 169.254.169.254 is never an egress destination: {LINK_LOCAL}", A_HOLE,
         (firewall_start, proxy_start)),
    Rule("tcp egress to the unspecified address", _set("egress.allow[1].host", "0.0.0.0"),
         "egress.allow[1].host: 0.0.0.0 is never an egress destination: 'this network' (0.0.0.0 is the room "
         "itself)", A_HOLE, (firewall_start, proxy_start)),
    Rule("tcp egress to Azure's wire server", _set("egress.allow[1].host", "168.63.129.16"),
         "egress.allow[1].host: 168.63.129.16 is never an egress destination: Azure's platform address (wire "
         "server, DNS, health probes), never a party's service", A_HOLE, (firewall_start, proxy_start)),
    Rule("tcp egress to a multicast address", _set("egress.allow[1].host", "224.0.0.251"),
         "egress.allow[1].host: 224.0.0.251 is never an egress destination: multicast", A_HOLE,
         (firewall_start, proxy_start)),
    Rule("tcp egress to broadcast", _set("egress.allow[1].host", "255.255.255.255"),
         "egress.allow[1].host: 255.255.255.255 is never an egress destination: reserved (255.255.255.255 is "
         "broadcast)", A_HOLE, (firewall_start, proxy_start)),
    Rule("tcp egress to every address", _set("egress.allow[1].host", "0.0.0.0/0"),
         "egress.allow[1].host: '0.0.0.0/0' is a network: a rule allows one destination, never a range (0.0.0.0/0 "
         "would allow everything)", "firewall: model.config_from_spec (not an address)", (firewall_start,)),
    Rule("https egress to localhost", _set("egress.allow[0]", {"host": "localhost", "port": GOVERNANCE_PORT}),
         f"egress.allow[0].host: localhost is never an egress destination: {LOOPBACK_NAME}", A_HOLE,
         (proxy_start,)),
    Rule("https egress to a .localhost name", _set("egress.allow[0].host", "skr.localhost"),
         f"egress.allow[0].host: skr.localhost is never an egress destination: {LOOPBACK_NAME}", A_HOLE,
         (proxy_start,)),
    Rule("https egress to localhost written otherwise", _set("egress.allow[0].host", "LocalHost."),
         f"egress.allow[0].host: LocalHost. is never an egress destination: {LOOPBACK_NAME}", A_HOLE,
         (proxy_start,)),
    Rule("http egress to a loopback address", _set("egress.allow[0]", {"host": "127.0.0.1", "port": SKR_PORT,
                                                                       "protocol": "http"}),
         f"egress.allow[0].host: 127.0.0.1 is never an egress destination: {LOOPBACK}", A_HOLE, (proxy_start,)),
    Rule("http egress to loopback in short form", _set("egress.allow[0]", {"host": "127.1", "port": SKR_PORT,
                                                                           "protocol": "http"}),
         f"egress.allow[0].host: '127.1' {SHORT_FORM}", A_HOLE, (proxy_start,)),
    Rule("https egress to loopback as a number", _set("egress.allow[0].host", "2130706433"),
         f"egress.allow[0].host: '2130706433' {SHORT_FORM}", A_HOLE, (proxy_start,)),
    Rule("https egress to the metadata address", _set("egress.allow[0].host", "169.254.169.254"),
         f"egress.allow[0].host: 169.254.169.254 is never an egress destination: {LINK_LOCAL}", A_HOLE,
         (proxy_start,)),
    Rule("https egress to any host", _set("egress.allow[0].host", "*"),
         f"egress.allow[0].host: an https rule needs a host name {HOST_NAME}, not '*'",
         "spec: the host-name rule (the proxy has no wildcard)", (proxy_start,)),
    Rule("https egress to a name with an empty label", _set("egress.allow[0].host", "api..example.com"),
         "egress.allow[0].host: 'api..example.com' has an empty label: not a host name",
         "proxy: runtime.ProxyRuntime.start, Envoy (invalid domain)", (proxy_start,)),
    # --- a policy file is read only from the spec's folder (issue 14)
    Rule("a policy file by absolute path", _set("endpoints[0].policy", "/etc/hostname"),
         "endpoints[0].policy: '/etc/hostname' must be a path relative to the spec's folder, not an absolute one: "
         "a policy file is read only from the spec's own folder",
         "nowhere: loading read it into the contract (ccr spec render policy, ccr governance setup)",
         (proxy_start, room_start)),
    Rule("a policy file outside the spec's folder", _set("endpoints[0].policy", "../outside.rego"),
         "endpoints[0].policy: '../outside.rego' must not climb out of the spec's folder with '..': a policy file "
         "is read only from the spec's own folder",
         "nowhere: loading read it into the contract", (proxy_start, room_start),
         files=(("../outside.rego", OUTSIDE_POLICY),)),
    Rule("a policy file name not normalised", _set("endpoints[0].policy", "./allow-get-hello.rego"),
         "endpoints[0].policy: './allow-get-hello.rego' must be written normalised ('allow-get-hello.rego'), with "
         "'/' between folders: a policy file is read only from the spec's own folder",
         "nowhere (the contract named one file two ways)", (proxy_start, room_start)),
    # --- what the launcher's container policy refuses, refused at validation (issue 14)
    Rule("an image not pinned", _set("application.image", "localhost/hello:latest"),
         f"application.image: 'localhost/hello:latest' {UNPINNED}",
         "launcher: policies/container.rego image_pinned, after consent", (launcher_start,)),
    Rule("an image pinned by a malformed digest", _set("application.image", "localhost/hello@sha256:ABC"),
         f"application.image: 'localhost/hello@sha256:ABC' {UNPINNED}",
         "launcher: policies/container.rego image_pinned, after consent", (launcher_start,)),
    Rule("an app running as uid 0", _set("application.user", "0:1000"),
         "application.user: the app must not run as uid 0 (the container policy's rule non_root_user; the firewall "
         "cannot confine uid 0)", "firewall: model.FirewallConfig (SpecError); launcher: non_root_user",
         (firewall_start, launcher_start)),
    Rule("an app running with gid 0", _set("application.user", "1000:0"),
         "application.user: the app must not run with gid 0 (the container policy's rule non_root_group)",
         "launcher: policies/container.rego non_root_group, after consent", (launcher_start,)),
    Rule("a privileged app", _set("application.privileged", True),
         "application.privileged: the app must not run privileged (the container policy's rule not_privileged)",
         "launcher: policies/container.rego not_privileged, after consent", (launcher_start,)),
    Rule("an app adding a capability", _set("application.capabilities", ["NET_ADMIN"]),
         "application.capabilities: the app may not add NET_ADMIN: it runs with every capability dropped (the "
         "container policy's rule no_added_capabilities)",
         "launcher: policies/container.rego no_added_capabilities, after consent", (launcher_start,)),
    Rule("an app mounting a host path", _set("application.mounts", [{"source": "/etc", "target": "/host-etc"}]),
         "application.mounts[0].source: '/etc' is not a datasource or datasink of the spec (the container policy's "
         "rule declared_mounts: the app mounts only the spec's volumes)",
         "launcher: policies/container.rego declared_mounts, after consent", (launcher_start,)),
    Rule("an app mounting a datasource elsewhere",
         _set("application.mounts", [{"source": "publisher-input", "target": "/data"}]),
         "application.mounts[0].target: publisher-input is mounted at /mnt/remote/publisher-input, not /data (the "
         "container policy's rule mount_targets)",
         "launcher: policies/container.rego mount_targets, after consent", (launcher_start,)),
    Rule("an app mounting a datasource read-write",
         _set("application.mounts", [{"source": "publisher-input", "target": "/mnt/remote/publisher-input",
                                      "mode": "rw"}]),
         "application.mounts[0].mode: publisher-input is mounted ro, not rw (the container policy's rule "
         "mount_modes)", "launcher: policies/container.rego mount_modes, after consent", (launcher_start,)),
    Rule("an app mount climbing out", _set("application.mounts", [{"source": "publisher-input",
                                                                   "target": "/mnt/remote/../../etc"}]),
         "application.mounts[0].target: must be an absolute path without '..'",
         "launcher: policies/container.rego mount_targets, after consent", (launcher_start,)),
    Rule("an app mount not normalised", _set("application.mounts", [{"source": "publisher-input",
                                                                     "target": "/mnt/remote//publisher-input"}]),
         "application.mounts[0].target: must be written normalised: '/mnt/remote/publisher-input'",
         "launcher: policies/container.rego mount_targets, after consent", (launcher_start,)),
    Rule("an app without a cpu limit", _set("application.resources.cpu", 0),
         "application.resources.cpu: Input should be greater than 0",
         "spec: PositiveFloat (the container policy's resource_limits)", (launcher_start,)),
    # --- volumes never over the image's system paths (issue 14)
    Rule("a datasource mounted over /etc", _set("datasources[0].mount_path", "/etc"),
         f"datasources[0].mount_path: must not be /etc or below it: {SYSTEM_PATH}",
         "nowhere: podman mounted it over the image's /etc", (launcher_start,)),
    Rule("a datasource mounted over the whole filesystem", _set("datasources[0].mount_path", "/"),
         "datasources[0].mount_path: must not be / (a volume over the whole filesystem replaces the image)",
         "nowhere: podman refused it at launch", (launcher_start,)),
    Rule("a datasource mounted below /usr", _set("datasources[0].mount_path", "/usr/lib/python3"),
         f"datasources[0].mount_path: must not be /usr or below it: {SYSTEM_PATH}",
         "nowhere: podman mounted it over the image's Python", (launcher_start,)),
    Rule("a datasource mounted over /tmp", _set("datasources[0].mount_path", "/tmp"),
         f"datasources[0].mount_path: must not be /tmp or below it: {SYSTEM_PATH}",
         "nowhere: podman mounted it over the app's scratch space", (launcher_start,)),
    Rule("a datasource mount path not normalised", _set("datasources[0].mount_path", "/mnt/data/"),
         "datasources[0].mount_path: must be written normalised: '/mnt/data'",
         "nowhere (the CCE policy measured one path, podman mounted another)", (launcher_start,)),
    # --- every service URL is https (issue 14)
    Rule("the governance service over http", _set("contract.governance.endpoint", "http://cgs.example"),
         "contract.governance.endpoint: URL scheme should be 'https'",
         "nowhere: governance sent its attested requests in clear", (room_start,)),
    Rule("a datasource's storage over http",
         _set("datasources[0].store.account_url", "http://10.0.0.9:10000/devstoreaccount1"),
         "datasources[0].store.account_url: URL scheme should be 'https'",
         "volumes: at the first request, when the storage client refuses a token over http", (volumes_start,)),
    Rule("a sink's storage over http", _set("telemetry.log_sink.store.account_url", "http://blob.example/acct"),
         "telemetry.log_sink.store.account_url: URL scheme should be 'https'",
         "telemetry: at export, when the storage client refuses a token over http", (telemetry_start,)),
    Rule("a resolved spec too large for CCR_SPEC", lambda data: None,
         rf"the resolved spec is \d+ bytes of JSON, over the {MAX_SPEC_JSON_BYTES} a sidecar's CCR_SPEC environment "
         rf"variable can hold \(Linux MAX_ARG_STRLEN\); the largest policy is endpoints\[0\] \(hello, "
         rf"{len(HUGE_POLICY)} characters\)",
         "ccr room up and every rendering: room.group.canonical_spec_json (SpecError); before the registry, the "
         "launcher too (Launcher() rendered the group)", (room_start,), regex=True,
         files=((POLICY_FILE, HUGE_POLICY),)),
]

#: What a sidecar still refuses itself, on purpose, keyed by (file, the spec field its message names).
KEPT = {
    ("sidecars/firewall/model.py", "application.user"):
        "the app's uid exempt from the firewall: the spec refuses uid 0, but --exempt-uid is a deployment option "
        "that can name the app's uid",
    ("sidecars/firewall/model.py", "egress.allow[].host"):
        "egress to the room's own address: only the running room knows it (CCR_ROOM_ADDRESS, its interfaces; "
        "tests/unit/firewall/test_room_addresses.py); the spec refuses loopback and what is never the room's",
    ("sidecars/proxy/model.py", "endpoints[].policy"):
        "a spec parsed from data without its policy file: loading the file (validate, every rendering) "
        "always inlines the Rego, so only code building specs from data meets it",
    ("sidecars/proxy/model.py", "egress.dns"):
        "depends on the proxy's own /etc/resolv.conf (or --dns-resolver), not on the spec",
    ("sidecars/launcher/images.py", "application.image"):
        "`ccr images build --pin`, a command, not a start-up",
    ("sidecars/telemetry/commands.py", "telemetry.{}"):
        "`ccr telemetry download --spec`: a command, asked for a sink the spec does not have",
}


def rule_dir(root: Path, rule: Rule) -> Path:
    """The rule's hostile spec written as a member would: spec.yaml, its policy file beside it."""
    directory = root / re.sub(r"\W+", "-", rule.id)
    directory.mkdir(parents=True, exist_ok=True)
    data = base_data()
    rule.change(data)
    (directory / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (directory / POLICY_FILE).write_text((API / POLICY_FILE).read_text())
    for name, text in rule.files:
        (directory / name).write_text(text)
    return directory


def room_environment(directory: Path) -> dict[str, str]:
    """A container's environment for the spec: CCR_SPEC, the resolved spec as JSON (variables filled in,
    each policy's Rego in the spec itself)."""
    data = yaml.safe_load((directory / "spec.yaml").read_text())
    for endpoint in data.get("endpoints", []):
        policy = endpoint.get("policy")
        if policy and not contained_path_problem(policy) and endpoint.get("policy_rego") is None:
            endpoint["policy_rego"] = (directory / endpoint["policy"]).read_text()
    text = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: LOCAL.get(m.group(1), m.group(2)), json.dumps(data))
    return {SPEC_ENV: text}


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """`ccr spec validate` run on every rule's spec (and the base spec, id "base"), all at once."""
    root = tmp_path_factory.mktemp("rules")
    endpoints = root / "endpoints.json"
    endpoints.write_text(json.dumps(LOCAL))
    base = Rule("base", lambda data: None, "", "", ())
    running = {}
    for rule in [base, *RULES]:
        spec_file = rule_dir(root, rule) / "spec.yaml"
        running[rule.id] = spec_file, subprocess.Popen(
            [sys.executable, "-m", "sidecars", "spec", "validate", str(spec_file), "--endpoints", str(endpoints)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for rule_id, (spec_file, process) in running.items():
        out, err = process.communicate(timeout=120)
        results[rule_id] = spec_file, subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def assert_reported(problems: list[str], rule: Rule) -> None:
    assert len(problems) == 1, problems
    if rule.regex:
        assert re.fullmatch(rule.line, problems[0]), problems[0]
    else:
        assert problems[0] == rule.line


def test_the_rules_are_distinct_and_each_names_where_it_was_refused():
    assert len({rule.id for rule in RULES}) == len(RULES)
    assert all(rule.refused_before and rule.starts for rule in RULES)
    assert len(HUGE_POLICY) > MAX_SPEC_JSON_BYTES


def test_the_base_spec_validates_and_every_start_up_derivation_runs_on_it(validated):
    spec_file, result = validated["base"]
    assert (result.returncode, result.stdout.strip()) == (0, "OK"), result.stdout + result.stderr
    for start in STARTS:
        assert start(spec_file) is not None, start.__name__
    assert Room.from_environment(room_environment(spec_file.parent), layout()).spec.name == "cleanroomhello-api"


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_validate_reports_the_rule_with_its_field(validated, rule):
    spec_file, result = validated[rule.id]
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert all(line.startswith(f"{spec_file}: ") for line in lines), lines
    assert_reported([line.removeprefix(f"{spec_file}: ") for line in lines], rule)


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_the_sidecar_fails_loading_the_spec_before_its_derivation_sees_it(validated, rule):
    spec_file, _ = validated[rule.id]
    for start in rule.starts:
        with pytest.raises(SpecError) as info:
            start(spec_file)
        assert_reported(info.value.problems, rule)
    with pytest.raises(ConfigError) as refused:
        Room.from_environment(room_environment(spec_file.parent), layout())
    assert refused.value.message.startswith(f"{SPEC_ENV}: "), refused.value.message
    assert_reported([refused.value.message.removeprefix(f"{SPEC_ENV}: ")], rule)


def unvalidated(rule: Rule) -> CleanRoomSpec:
    """The base spec with the rule's change to `application` made past validation: what the launcher would get
    from a spec that did not come through `load_spec`."""
    data = base_data()
    rule.change(data)
    spec = parse_spec(base_data(), variables=LOCAL, base_dir=API)
    before = base_data()["application"]
    changed = {k: v for k, v in data["application"].items() if k != "resources" and v != before.get(k)}
    fields = {**dict(spec.application), **changed}
    fields["mounts"] = [AppMount.model_construct(**{"mode": "ro", **m}) for m in fields["mounts"]]
    fields["resources"] = spec.application.resources.model_copy(update=data["application"]["resources"])
    return spec.model_copy(update={"application": Application.model_construct(**fields)})


#: The container policy's rules the spec cannot break: the launcher builds these from the spec itself, so only
#: a tampered launch (tests/unit/launcher/test_container_policy.py) or the local image differ.
NOT_SPEC_RULES = {
    "image_digest": "the local image's digest: only the launcher, at launch, knows it",
    "image_declared": "the launcher runs the declared image",
    "read_only_rootfs": "always set by the launcher (no spec field)",
    "no_new_privileges": "always set by the launcher (no spec field)",
    "env_declared": "the launcher runs the declared environment",
    "command_declared": "the launcher runs the declared command",
}
#: Each other rule of policies/container.rego → a rule above whose spec breaks it.
CONTAINER_POLICY_RULES = {
    "image_pinned": "an image not pinned", "non_root_user": "an app running as uid 0",
    "non_root_group": "an app running with gid 0", "not_privileged": "a privileged app",
    "no_added_capabilities": "an app adding a capability", "declared_mounts": "an app mounting a host path",
    "mount_modes": "an app mounting a datasource read-write", "mount_targets": "an app mounting a datasource elsewhere",
    "resource_limits": "an app without a cpu limit",
}


def test_every_container_policy_rule_is_reported_by_validate_first(validated):
    """Walk policies/container.rego's deny rules: each that a spec can break has a spec above that breaks it;
    `ccr spec validate` refuses that spec (exit 1, the field named), and the launcher's policy, handed the same
    app past validation, denies it by that rule: validation is where a party learns it, not the launch."""
    rules = set(re.findall(r'msg := (?:sprintf\()?"(\w+):', CONTAINER_POLICY.read_text()))
    assert rules == set(CONTAINER_POLICY_RULES) | set(NOT_SPEC_RULES)
    by_id = {rule.id: rule for rule in RULES}
    for policy_rule, rule_id in CONTAINER_POLICY_RULES.items():
        spec_file, result = validated[rule_id]
        assert result.returncode == 1 and result.stdout.startswith(f"{spec_file}: application."), result.stdout
        denied = launcher_violations(unvalidated(by_id[rule_id]))
        assert any(v.startswith(f"{policy_rule}:") for v in denied), (policy_rule, denied)


# --- the guard: no sidecar refuses a spec field at start unless KEPT says why --------------------------------

SIDECAR_CODE = ("firewall", "proxy", "telemetry", "volumes", "skr", "governance", "identity", "launcher", "common")
REFUSALS = {"ConfigError", "SpecError", "ValueError", "RegoPolicyError"}


def _field_pattern() -> re.Pattern[str]:
    """What may be a spec field path in a message: a top-level field followed by [..] or .name, where {}
    stands for what is formatted in (`name` and `apiVersion` are too common a word to tell)."""
    heads = sorted({field.alias or name for name, field in CleanRoomSpec.model_fields.items()} - {"name", "apiVersion"})
    return re.compile(rf"(?<![\w.{{}}-])(?:{'|'.join(heads)})(?:\[[^\]]*\]|\.(?:\w|\{{\}})+)+")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _model_of(arg))), None)


def _is_spec_path(path: str) -> bool:
    """Whether each step of `path` is a field of the spec's models (`endpoints.json` is a file, not a field)."""
    model: type[BaseModel] | None = CleanRoomSpec
    for step in re.sub(r"\[[^\]]*\]", "", path).split("."):
        if model is None or "{}" in step:  # past the models (a mapping's key), or formatted in: any field
            return True
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        if step not in fields:
            return False
        model = _model_of(fields[step].annotation)
    return True


def _text(node: ast.AST) -> str:
    """A message's literal text, each formatted value as {}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join("{}" if isinstance(v, ast.FormattedValue) else _text(v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.List | ast.Tuple):
        return " ".join(_text(element) for element in node.elts)
    if isinstance(node, ast.ListComp):
        return _text(node.elt)
    return ""


def sidecar_refusals_naming_spec_fields() -> set[tuple[str, str]]:
    fields = _field_pattern()
    found = set()
    for folder in SIDECAR_CODE:
        for path in sorted((REPO / "sidecars" / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                called = node.exc.func
                if (called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")) not in REFUSALS:
                    continue
                for match in fields.finditer(" ".join(_text(arg) for arg in node.exc.args)):
                    if _is_spec_path(match.group(0)):
                        found.add((str(path.relative_to(REPO)), re.sub(r"\[[^\]]*\]", "[]", match.group(0))))
    return found


def test_no_sidecar_refuses_a_spec_field_unless_kept_for_a_reason():
    """A sidecar that raises ConfigError/SpecError/ValueError naming a spec field (`egress.allow[i].host: ...`)
    decides a spec rule at start. Move the rule into sidecars/spec.py and RULES, or add it to KEPT with why.
    (A refusal whose message names no field is not seen: messages name their field, by convention.)"""
    assert sidecar_refusals_naming_spec_fields() == set(KEPT)
