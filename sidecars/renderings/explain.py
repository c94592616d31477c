"""`ccr spec explain`: in plain words, for each party, what its key is released to and what the room
may do with the data. Everything printed is read from the same rendering that produces the policy.

A party reads this before it accepts a contract someone else wrote, so it names every way data can leave
the room (each egress rule, each datasink and sink, the inbound APIs, and each sidecar API the app may
call, with what that API hands out) and what the contract embeds that the spec file does not show: each
endpoint's Rego, by name, size and sha256, as measured in HOST_DATA."""

from __future__ import annotations

import hashlib

from ..common.containers import Container
from ..spec import CleanRoomSpec, EncryptionMode, Endpoint, Sink
from .release_policy import party_authorities
from .render import Rendering


def _parties(spec: CleanRoomSpec) -> list[str]:
    seen = list(spec.contract.members)
    for _, vol in spec.volumes_with_location():
        if vol.owner and vol.owner not in seen:
            seen.append(vol.owner)
    return seen


def _privileges(app: Container) -> str:
    if app.privileged:
        return "PRIVILEGED (the launcher's container policy refuses this)"
    return f"capabilities {', '.join(app.capabilities)}" if app.capabilities else "no capabilities"


def _policy(endpoint: Endpoint) -> str:
    # Without a policy the proxy refuses every request (sidecars/proxy/model.py).
    if endpoint.policy_rego is None:
        return "no request policy, so every request is refused"
    text = endpoint.policy_rego.encode()
    return (f"the Rego policy {endpoint.policy or 'written in the spec'} ({len(text)} bytes, sha256 "
            f"{hashlib.sha256(text).hexdigest()}, embedded in the contract)")


def _sink(kind: str, sink: Sink, consent: str) -> str:
    key = sink.encryption.key
    to = f" to {key.kek_name} in {key.vault_url}" if key else ""
    return (f"  - export {kind} to {sink.store.place}, encrypted{to} "
            f"({sink.encryption.mode.value}), only while the members' {consent} consent is enabled"
            + (f", every {sink.export_interval_s:g} s" if sink.export_interval_s else ""))


def _sidecar_apis(spec: CleanRoomSpec) -> list[str]:
    """What each sidecar API the contract opens to the app hands out: each is a channel out of the room."""
    app = spec.application
    keys = [t.encryption.key for t in spec.blob_targets() if t.encryption.key is not None]
    vaults = sorted({str(u) for u in (*(k.vault_url for k in keys), *(k.secret_vault_url for k in keys if
                                                                       k.secret_vault_url), *app.key_vaults)})
    identities = ", ".join(sorted(spec.federated_identities())) or "none in this spec"
    what = {
        "governance": "read the contract's secrets, write audit events to CGS (seen by every member), get tokens "
                      "issued by the contract's OIDC issuer",
        "skr": "get attestation reports and MAA tokens, and release keys from the vaults "
               + (", ".join(vaults) if vaults else "(none in this spec)")
               + " (the volumes' keys among them)",
        "identity": f"get managed identity tokens for the spec's federated identities ({identities})",
        "telemetry": "send OTLP traces, metrics and logs, which leave only through the telemetry and log sinks",
    }
    return [f"  - call the {api} sidecar API: {what[api]}" for api in app.sidecar_apis]


MOCK_WARNING = ("WARNING: rendered for the local stand-ins' MOCK SEV-SNP platform: the keys' release policies also "
                "accept x-ms-compliance-status ccr-mock-uvm, a UVM no hardware protects (a real Azure Attestation "
                "never issues it). Never put real data in this room.")


def explain(spec: CleanRoomSpec, rendering: Rendering, *, mock_platform: bool = False) -> str:
    app = rendering.group.app
    out = [f"Clean room {spec.name} (contract {spec.contract.id}, governance {spec.contract.governance.endpoint})",
           f"  CCE policy hash (HOST_DATA): {rendering.host_data}",
           f"  application: {app.image}",
           f"    runs as uid {app.user.uid}, {_privileges(app)}, read-only root",
           f"    command: {' '.join(app.command) or '(image default)'}",
           ""]
    room = ["What the room may do:"]
    for vol in spec.datasources:
        room.append(f"  - read {vol.owner or 'unowned'}'s data {vol.name} ({vol.store.short_place}) "
                    f"at {vol.path_in_app}, read-only, decrypted only inside the room ({vol.encryption.mode.value})")
        room.append(f"      only the objects of manifest {vol.manifest_sha256[:16]}… (no other version, none missing)"
                    if vol.manifest_sha256 else
                    "      WARNING: no manifest pinned: storage could roll objects back or delete them unnoticed "
                    "(ccr data publish --pin)")
    for vol in spec.datasinks:
        room.append(f"  - write {vol.name} for {vol.owner or 'unowned'} ({vol.store.short_place}) "
                    f"from {vol.path_in_app}, encrypted before it leaves the room ({vol.encryption.mode.value}), "
                    "with a manifest signed by the room's contract-CA-endorsed key")
    room.append("  - start only after the contract is accepted (execution consent); any member can revoke it, "
                "which stops the app")
    room.append("")
    room.append("Every channel out of the room:")
    for vol in spec.datasinks:
        room.append(f"  - datasink {vol.name}: what the app writes at {vol.path_in_app}, to {vol.store.place}, "
                    f"encrypted ({vol.encryption.mode.value})")
    if spec.egress.none:
        room.append("  - egress: none, all egress is blocked")
    for rule in spec.egress.allow:
        what = ("any TCP stream" if rule.protocol == "tcp" else
                f"{rule.protocol.upper()} requests whose host is {rule.host}" + (", TLS verified by the proxy"
                                                                                 if rule.protocol == "https" else ""))
        room.append(f"  - egress {rule.protocol} to {rule.host}:{rule.port}: {what}")
    if spec.egress.allow and spec.egress.dns == "tcp":
        room.append("  - DNS over TCP, to the proxy's own resolvers: names the app looks up leave the room")
    for ep in spec.endpoints:
        room.append(f"  - API {ep.name} (app port {ep.port}): clients outside call it over TLS via the proxy and "
                    f"read its answers, filtered by {_policy(ep)}")
    if not spec.endpoints:
        room.append("  - inbound: none, the room accepts no connection")
    sinks = ((spec.telemetry.telemetry_sink, "telemetry (traces, metrics, sidecar logs)", "telemetry"),
             (spec.telemetry.log_sink, "the app's logs (stdout, stderr)", "logging"))
    for sink, kind, consent in sinks:
        room.append(_sink(kind, sink, consent) if sink else f"  - {kind}: not exported (no sink)")
    room += _sidecar_apis(spec) or ["  - sidecar APIs: the app may call none"]
    for party in _parties(spec):
        out.append(f"Party {party}:")
        owned = [v for _, v in spec.volumes_with_location() if v.owner == party]
        keyed = [v for v in owned if v.encryption.mode is not EncryptionMode.SSE and v.encryption.key]
        if not keyed:
            out.append("  holds no key for this room" + (" (its volumes use storage-side encryption)" if owned else ""))
            out.append("")
            continue
        for vol in keyed:
            key = vol.encryption.key
            assert key is not None
            out.append(f"  key {key.kek_name} in {key.vault_url} (protects {vol.name}) will be released only to:")
        authorities = ", ".join(party_authorities(spec, party))
        out.append(f"    a confidential container group attested by {authorities},")
        out.append("    running a Microsoft-endorsed UVM (x-ms-compliance-status azure-compliant-uvm"
                   + (", or ccr-mock-uvm: the MOCK platform's" if mock_platform else "") + "), not debuggable,")
        out.append(f"    whose CCE policy hashes to {rendering.host_data}: exactly the containers below.")
        out.append("")
    out += room + ["", "Containers measured by the policy:"]
    for c in rendering.group.containers:
        flags = ", ".join(f for f in ("privileged" if c.privileged else "",
                                      "started by the launcher after consent" if c.started_by == "launcher" else "")
                          if f)
        out.append(f"  - {c.name} ({c.role}): {c.image}" + (f" [{flags}]" if flags else ""))
    if mock_platform:
        out = [MOCK_WARNING, "", *out, "", MOCK_WARNING]
    return "\n".join(out) + "\n"
