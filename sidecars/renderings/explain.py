"""`ccr spec explain`: in plain words, for each party, what its key is released to and what the room
may do with the data. Everything printed is read from the same rendering that produces the policy."""

from __future__ import annotations

from ..common.containers import Container
from ..spec import CleanRoomSpec, EncryptionMode
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


def explain(spec: CleanRoomSpec, rendering: Rendering) -> str:
    app = rendering.group.app
    out = [f"Clean room {spec.name} (contract {spec.contract.id}, governance {spec.contract.governance.endpoint})",
           f"  CCE policy hash (HOST_DATA): {rendering.host_data}",
           f"  application: {app.image}",
           f"    runs as uid {app.user.uid}, {_privileges(app)}, read-only root",
           f"    command: {' '.join(app.command) or '(image default)'}",
           ""]
    room = ["What the room may do:"]
    for vol in spec.datasources:
        room.append(f"  - read {vol.owner or 'unowned'}'s data {vol.name} (blob container {vol.store.container}) "
                    f"at {vol.path_in_app}, read-only, decrypted only inside the room ({vol.encryption.mode.value})")
        room.append(f"      only the objects of manifest {vol.manifest_sha256[:16]}… (no other version, none missing)"
                    if vol.manifest_sha256 else
                    "      WARNING: no manifest pinned: storage could roll objects back or delete them unnoticed "
                    "(ccr data publish --pin)")
    for vol in spec.datasinks:
        room.append(f"  - write {vol.name} for {vol.owner or 'unowned'} (blob container {vol.store.container}) "
                    f"from {vol.path_in_app}, encrypted before it leaves the room ({vol.encryption.mode.value}), "
                    "with a manifest signed by the room's contract-CA-endorsed key")
    if spec.egress.none:
        room.append("  - open no outbound connection: all egress is blocked")
    for rule in spec.egress.allow:
        room.append(f"  - connect out to {rule.host}:{rule.port} ({rule.protocol}) and nowhere else")
    for ep in spec.endpoints:
        # Without a policy the proxy refuses every request (sidecars/proxy/model.py).
        policy = ("the Rego policy " + (ep.policy or "written in the spec") if ep.policy or ep.policy_rego is not None
                  else "no request policy, so every request is refused")
        room.append(f"  - serve API {ep.name} (app port {ep.port}) to outside clients over TLS via the proxy, "
                    f"filtered by {policy}")
    if not spec.endpoints:
        room.append("  - accept no inbound connection")
    room.append("  - start only after the contract is accepted (execution consent); any member can revoke it, "
                "which stops the app")
    room.append("  - export telemetry and logs only while their consent is enabled"
                + (f", encrypted to {spec.telemetry.log_sink.store.container}" if spec.telemetry.log_sink else ""))
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
        out.append("    running a Microsoft-endorsed UVM (x-ms-compliance-status azure-compliant-uvm), not debuggable,")
        out.append(f"    whose CCE policy hashes to {rendering.host_data}: exactly the containers below.")
        out.append("")
    out += room + ["", "Containers measured by the policy:"]
    for c in rendering.group.containers:
        flags = ", ".join(f for f in ("privileged" if c.privileged else "",
                                      "started by the launcher after consent" if c.started_by == "launcher" else "")
                          if f)
        out.append(f"  - {c.name} ({c.role}): {c.image}" + (f" [{flags}]" if flags else ""))
    return "\n".join(out) + "\n"
