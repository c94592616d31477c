"""The proxy's inbound certificate endorsed by the contract CA through the governance sidecar: a client
that trusts only the contract's CA (as the members publish it) reaches the attested room's API."""

from __future__ import annotations

import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509

from sidecars.common.errors import RemoteServiceError
from sidecars.proxy.certs import GovernanceCertificateSource
from sidecars.proxy.model import InboundEndpoint, ProxyModel
from sidecars.proxy.runtime import ProxyRuntime, plan


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *_args) -> None:
        pass


def test_clients_trusting_the_contract_ca_reach_the_room(consortium, governance, tmp_path):
    contract_id = consortium.new_contract()
    alice = consortium["alice"]
    consortium.enable_ca(contract_id)
    certificate = GovernanceCertificateSource(governance(contract_id)).issue("room", ["localhost", "127.0.0.1"],
                                                                               tmp_path / "tls")
    contract_ca = alice.ca_status(contract_id)["caCert"]
    # CGS answers the certificate alone: the room serves its leaf and holds no CA certificate; clients take
    # the contract CA from the members.
    assert certificate.ca_file is None
    assert len(x509.load_pem_x509_certificates(Path(certificate.tls.cert_file).read_bytes())) == 1

    app = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    endpoint = InboundEndpoint("api", app.server_address[1], "allow.rego", "package envoy.authz\n\nallow := true\n")
    model = plan(ProxyModel(inbound=(endpoint,), inbound_tls=certificate.tls, inbound_address="127.0.0.1",
                            inbound_port=0, egress_http_port=0, egress_tcp_port=0, admin_port=0, authz_port=0,
                            extproc_port=0))
    try:
        with ProxyRuntime(model, tmp_path / "proxy") as proxy:
            trusting = ssl.create_default_context(cadata=contract_ca)
            conn = http.client.HTTPSConnection("localhost", proxy.ports.inbound, context=trusting, timeout=10)
            conn.request("GET", "/hello")
            assert conn.getresponse().read() == b"hello"
            conn.close()
            # The room's certificate is the contract CA's word, not the system's.
            with pytest.raises(ssl.SSLCertVerificationError):
                stranger = http.client.HTTPSConnection("localhost", proxy.ports.inbound,
                                                       context=ssl.create_default_context(), timeout=10)
                stranger.request("GET", "/hello")
    finally:
        app.shutdown()


def test_without_a_contract_ca_the_proxy_gets_no_certificate(consortium, governance, tmp_path):
    contract_id = consortium.new_contract()
    with pytest.raises(RemoteServiceError, match="NoCASigningKey|CA"):
        GovernanceCertificateSource(governance(contract_id)).issue("room", ["localhost"], tmp_path / "tls")
    assert not (tmp_path / "tls" / "room.pem").exists()
