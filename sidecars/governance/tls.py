"""TLS verification for the governance clients: a given CA bundle (the local CA of the stand-ins), else the
system's trust store."""

from __future__ import annotations

import ssl


def tls_verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
