"""The subjects of the certificates the contract CA endorses for the room's own sidecars.

The contract CA (CGS, through the governance sidecar's `POST /ca/generateEndorsedCert`) endorses any key an
attested room of the contract presents, and the app may call that API too when the contract lists the
governance sidecar API. A certificate names what it may stand for by its subject: clients of the room's
APIs trust the proxy's `CN=room`, and a consumer trusts a datasink's results only if their manifest is
signed with a key endorsed as `CN=ccr datasink NAME`. The app must never hold such a certificate, so these
subjects are reserved: only callers presenting the sidecar token get them.
"""

from __future__ import annotations

#: The proxy's TLS certificate, which the room's API clients verify against the contract CA.
ROOM_TLS_COMMON_NAME = "room"
#: Every other sidecar key the contract CA endorses is named under this prefix.
SIDECAR_COMMON_NAME_PREFIX = "ccr "


def datasink_signer_name(volume: str) -> str:
    """The common name of the key that signs datasink `volume`'s manifest."""
    return f"{SIDECAR_COMMON_NAME_PREFIX}datasink {volume}"


def reserved_for_sidecars(subject_name: str) -> bool:
    """Whether `subject_name` (as the API takes it: `CN=...`, a DN, or a bare name that CAs read as the common
    name) names a sidecar's certificate. Every reading counts (each CN of a DN, and the whole text after a
    leading `CN=`, which is how the stand-in reads it); spaces and case are ignored, so neither `cn = Room`
    nor a second CN gets round it."""
    readings = [subject_name]
    if subject_name[:3].upper() == "CN=":
        readings.append(subject_name[3:])
    for rdn in subject_name.split(","):
        key, _, value = rdn.partition("=")
        if key.strip().upper() == "CN":
            readings.append(value)
    for reading in readings:
        name = " ".join(reading.split()).lower()
        if name == ROOM_TLS_COMMON_NAME or name.startswith(SIDECAR_COMMON_NAME_PREFIX.strip() + " "):
            return True
    return False
