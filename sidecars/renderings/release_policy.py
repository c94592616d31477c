"""Key release policies: what each party attaches to its KEK so that only this room gets it.

A party's key is released by its Key Vault / managed HSM only against an attestation token from the
party's own attestation service (`authority`) whose claims say: an SEV-SNP VM, running a UVM Microsoft
endorsed (`x-ms-compliance-status`), not debuggable, whose HOST_DATA is the hash of exactly this
room's CCE policy. Claims are compared as strings, as Key Vault does.

`release_policy_for(spec, party)` is what `ccr keys create-kek` calls.
"""

from __future__ import annotations

from ..common.errors import ConfigError
from ..common.release_policy import COMPLIANT_UVM, MOCK_UVM
from ..spec import CleanRoomSpec, EncryptionMode
from .layers import ImageResolver
from .render import render


def party_authorities(spec: CleanRoomSpec, party: str) -> list[str]:
    """The attestation services the party's keys trust, in spec order, without duplicates."""
    owned = [vol for _, vol in spec.volumes_with_location() if vol.owner == party]
    if not owned:
        members = sorted({v.owner for _, v in spec.volumes_with_location() if v.owner})
        raise ConfigError(f"party {party!r} owns no datasource or datasink in {spec.name}; "
                          f"owners: {', '.join(members) or 'none'}")
    authorities: list[str] = []
    for vol in owned:
        if vol.encryption.mode is EncryptionMode.SSE or vol.encryption.key is None:
            continue
        authority = str(vol.encryption.key.maa_endpoint).rstrip("/")
        if authority not in authorities:
            authorities.append(authority)
    if not authorities:
        raise ConfigError(f"party {party!r} has no key in {spec.name} (all its volumes use SSE)")
    return authorities


def release_policy(authorities: list[str], host_data: str, *, accept_mock_uvm: bool = False) -> dict:
    """`accept_mock_uvm`: rendered for the local stand-ins, whose MAA says `ccr-mock-uvm` of the mock
    platform's UVM; each authority then gets a second rule accepting that (a real MAA never says it)."""
    # The same claims, in the same order, as the keys package's `sevsnp_policy`.
    statuses = [COMPLIANT_UVM, *([MOCK_UVM] if accept_mock_uvm else [])]
    return {"version": "1.0.0", "anyOf": [
        {"authority": a, "allOf": [
            {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
            {"claim": "x-ms-sevsnpvm-hostdata", "equals": host_data.lower()},
            {"claim": "x-ms-compliance-status", "equals": status},
            {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
        ]} for a in authorities for status in statuses]}


def release_policy_for(spec: CleanRoomSpec, party: str, *, host_data: str | None = None,
                       images: ImageResolver | None = None, accept_mock_uvm: bool = False) -> dict:
    """The SKR release policy for `party`'s KEK. `host_data` defaults to this spec's CCE policy hash
    (rendered with `images`, default: local podman images or the `CCR_LAYER_LOCK` file)."""
    authorities = party_authorities(spec, party)
    if host_data is None:
        host_data = render(spec, images).host_data
    return release_policy(authorities, host_data, accept_mock_uvm=accept_mock_uvm)
