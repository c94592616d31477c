"""Transports for the governance clients: TLS verification with a given CA bundle (the local CA of the
stand-ins) or the system's trust store, and TCP_NODELAY: httpx writes a request's headers and body
separately, and with Nagle the body waits for the server's delayed ACK of the headers (~40 ms, or a few
ms on a busy box)."""

from __future__ import annotations

import socket
import ssl

import httpx

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def tls_verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


def http_transport(ca_bundle: str | None = None, *, tls: ssl.SSLContext | None = None) -> httpx.HTTPTransport:
    """`tls`, when given, is the whole client TLS context (e.g. one presenting a client certificate) and
    `ca_bundle` is then already in it."""
    return httpx.HTTPTransport(verify=tls if tls is not None else tls_verify(ca_bundle), socket_options=_NODELAY)


def async_http_transport(ca_bundle: str | None = None) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=tls_verify(ca_bundle), socket_options=_NODELAY)
