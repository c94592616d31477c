"""The TLS listener's list of client certificates (sidecars.common.http): kept in step with the app's list at
each handshake, only ever growing, and an unusable entry does not keep the others out."""

from __future__ import annotations

import ssl

from sidecars.common.http import _ClientCertTrust
from sidecars.common.memberauth import MemberIdentity


def _trusted(context: ssl.SSLContext) -> int:
    return context.cert_store_stats()["x509"]


def test_certificates_added_later_are_trusted_at_the_next_handshake_and_a_bad_one_is_skipped(tmp_path):
    alice, bob = (MemberIdentity.create(tmp_path / n, n) for n in ("alice", "bob"))
    listed = ["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", alice.cert_pem]
    trust = _ClientCertTrust(lambda: listed)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trust(None, None, context)  # type: ignore[arg-type]
    assert _trusted(context) == 1
    listed.append(bob.cert_pem)
    trust(None, None, context)  # type: ignore[arg-type]
    assert _trusted(context) == 2
    trust(None, None, context)  # type: ignore[arg-type]
    assert _trusted(context) == 2
