"""The HTTP services we run, built in-process for the fuzz tests, each with what authenticates a caller to it.

Every app is the product's own `build_app`; what differs from a room is only the wiring: the services a sidecar
calls (CGS, skr, MAA, Key Vault) are the in-process stand-ins reached through `HostRouter`, so a fuzzed request
that gets past a sidecar's checks goes on to a real stand-in, and no request leaves the process. Credentials are
added by an ASGI wrapper around the app (`Credentials`), so the fuzzer's requests get past authentication: a
member's signature over the very body sent, a bearer token, a room's attested and signed envelope.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecars.attestation import MockPlatform
from sidecars.attestation.providers import MockSnpProvider
from sidecars.attestation.verify import Trust
from sidecars.common.ccfwire import GOV_API_VERSION
from sidecars.common.devtokens import DevTokenIssuer
from sidecars.common.envelope import Attestation, RoomKey
from sidecars.common.jose import b64url_encode
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.release_policy import sevsnp_policy
from sidecars.common.tls import LocalCA
from sidecars.emulators.cgs.app import build_app as build_cgs
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.ca import generate_ca_key
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store
from sidecars.emulators.cgs.verifier import attestation_verifier
from sidecars.emulators.entra.app import CredentialSource, FederatedCredential, IssuerKeys, TokenIssuer
from sidecars.emulators.entra.app import build_app as build_entra
from sidecars.emulators.keyvault.access import TrustedIssuer
from sidecars.emulators.keyvault.app import build_app as build_keyvault
from sidecars.emulators.keyvault.signer import ResponseSigner
from sidecars.emulators.maa.app import TokenSigner, create_maa_app
from sidecars.governance.cgs_client import CgsRoomClient
from sidecars.governance.service import GovernanceConfig
from sidecars.governance.service import build_app as build_governance
from sidecars.identity.service import IdentityConfig
from sidecars.identity.service import build_app as build_identity
from sidecars.launcher.service import Launcher
from sidecars.launcher.service import build_app as build_launcher
from sidecars.launcher.sidecar import LauncherConfig
from sidecars.skr.app import build_app as build_skr
from sidecars.skr.destinations import Destinations
from sidecars.skr.flow import KeyReleaser
from sidecars.spec import load_spec
from sidecars.telemetry.app import build_app as build_telemetry
from sidecars.telemetry.buffer import EncryptedBuffer
from sidecars.telemetry.export import Exporter

CONTRACT = "c1"
MAA_URL, VAULT_URL, CGS_URL, SKR_URL = "https://maa.test", "https://vault.test", "https://cgs.test", "https://skr.test"
# Where a sidecar's upstream is not injectable (identity builds its own clients): a closed loopback port.
CLOSED_LOOPBACK = "http://127.0.0.1:9"
# The routes a room calls with its envelope (the same paths answer members under other methods).
ROOM_ROUTES = {
    "POST": re.compile(r"^/app/contracts/[^/]+/(secrets/[^/]+|memberdocuments/accepted/"
                       r"[^/]+|oauth/token|ca/generateEndorsedCert|runtimeoptions/[^/]+/status)$"),
    "PUT": re.compile(r"^/app/contracts/[^/]+/events$"),
}


class HostRouter(httpx.AsyncBaseTransport):
    """An httpx transport sending each request to the in-process app of its host; any other host is refused as
    a closed port would refuse it."""

    def __init__(self, apps: dict[str, ASGIApp]):
        self.transports = {httpx.URL(url).host: httpx.ASGITransport(app=app) for url, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"{request.url.host}: connection refused", request=request)
        return await transport.handle_async_request(request)


class WithoutLifespan:
    """ASGI wrapper answering the lifespan protocol itself: a test client's lifespan would otherwise run the
    app's shutdown (closing the clients a sidecar shares with its other callers) while the fuzz goes on."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


Sign = Callable[[Scope, bytes], Awaitable[tuple[list[tuple[bytes, bytes]], bytes]]]


class Credentials:
    """ASGI wrapper: reads the request's body, lets `sign` add headers or rewrite the body, and passes it on."""

    def __init__(self, app: ASGIApp, sign: Sign):
        self.app, self.sign = app, sign

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await WithoutLifespan(self.app)(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        extra, body = await self.sign(scope, body)
        names = {name for name, _ in extra}
        headers = [(k, v) for k, v in scope["headers"] if k not in names and k != b"content-length"]
        headers += [*extra, (b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


@dataclass
class Service:
    """An app under fuzz: anonymous, and wrapped with valid credentials. `error_schema` is the JSON schema of
    its error answers; `upstream_statuses` are the 5xx it may answer when an upstream it names is down."""

    name: str
    app: ASGIApp
    authenticated: ASGIApp
    error_schema: dict[str, Any]
    upstream_statuses: frozenset[int] = field(default_factory=frozenset)
    # Path parameter values naming objects that exist, so that generated requests reach them too.
    path_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # For a service that authenticates its callers: the paths served to anyone. Every other path must refuse
    # an anonymous request, whatever it carries (None: the service does not authenticate).
    open_paths: re.Pattern[str] | None = None


AZURE_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "minLength": 1}, "message": {"type": "string"}}}}}
PLAIN_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "minLength": 1}}}
AAD_ERROR = {"type": "object", "required": ["error", "error_description", "error_codes"], "properties": {
    "error": {"type": "string", "minLength": 1}, "error_description": {"type": "string"},
    "error_codes": {"type": "array", "items": {"type": "integer"}}}}
IMDS_ERROR = {"type": "object", "required": ["error", "error_description"], "properties": {
    "error": {"type": "string", "minLength": 1}, "error_description": {"type": "string"}}}


@dataclass
class Fixtures:
    """The keys and identities the services share, made once per session."""

    directory: Path
    platform: MockPlatform
    member: MemberIdentity
    operator: MemberIdentity
    dev_tokens: DevTokenIssuer
    ca: LocalCA

    @classmethod
    def create(cls, directory: Path) -> Fixtures:
        return cls(directory, MockPlatform.create(directory / "platform"),
                   MemberIdentity.create(directory / "member", "member"),
                   MemberIdentity.create(directory / "operator", "operator"),
                   DevTokenIssuer.create(directory / "devtokens"), LocalCA.create(directory / "ca"))

    def provider(self) -> MockSnpProvider:
        return MockSnpProvider(self.platform, host_data=bytes.fromhex("4d" * 32))


def cgs(fx: Fixtures) -> Service:
    store = Store(fx.directory / "cgs-state.json")
    store.add_member(fx.member.member_id, "member", fx.member.cert_pem)
    store.put_contract(CONTRACT, {"purpose": "fuzz"}, None)
    contract = store.contract_view(CONTRACT)
    for action in ({"name": "set_contract", "args": {"contractId": CONTRACT, "contract": contract}},
                   {"name": "set_clean_room_policy", "args": {"contractId": CONTRACT, "type": "add", "claims": {
                       "x-ms-sevsnpvm-hostdata": "4d" * 32, "x-ms-sevsnpvm-is-debuggable": False}}},
                   {"name": "enable_ca", "args": {"contractId": CONTRACT}}):
        proposal = store.create_proposal(fx.member.member_id, [action])
        store.vote(proposal["proposalId"], fx.member.member_id, True)
    store.set_execution(CONTRACT, fx.member.member_id, "enabled")
    secret_id = store.put_secret(CONTRACT, fx.member.member_id, "s1", "secret value")
    store.put_document("d1", CONTRACT, {"kind": "dataset"}, None)
    proposal = store.create_proposal(fx.member.member_id, [{"name": "set_member_document", "args": {
        "documentId": "d1", "document": store.document_view("d1")}}])
    store.vote(proposal["proposalId"], fx.member.member_id, True)
    issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), f"{CGS_URL}/oidc")
    app = build_cgs(store, AuditLog(store.db), attestation_verifier(fx.platform.directory),
                    issuer, fx.operator.cert, CgsConfig(allow_signed_header=True))
    generate_ca_key(store, CONTRACT)
    room_key = RoomKey.generate()
    evidence = fx.provider().get_evidence(room_key.report_data).to_combined()
    attestation = Attestation(evidence["evidence"], evidence["endorsements"], evidence.get("uvm_endorsements", ""))

    async def sign(scope: Scope, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        room_route = ROOM_ROUTES.get(scope["method"])
        if room_route is not None and room_route.match(scope["path"]):
            # A room: whatever the fuzzer sent becomes the data of an attested, signed envelope.
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                data = body.decode(errors="replace")
            envelope = room_key.signed_request(attestation, data)
            return [(b"content-type", b"application/json")], json.dumps(envelope).encode()
        # A member: its connection presents the member's certificate (mutual TLS), and /gov requests name the
        # api-version. The stand-in here also accepts the legacy signed header, so JSON bodies still reach
        # the governance writes' logic (a COSE-only stand-in would refuse nearly every fuzzed body first).
        scope["extensions"] = {**(scope.get("extensions") or {}),
                               "tls": {"client_cert_chain": [fx.member.cert_pem]}}
        if scope["path"].startswith("/gov/") and b"api-version=" not in scope.get("query_string", b""):
            scope["query_string"] = b"&".join(q for q in (scope.get("query_string", b""),
                                                          f"api-version={GOV_API_VERSION}".encode()) if q)
        query = scope.get("query_string", b"").decode()
        target = scope["path"] + (f"?{query}" if query else "")
        return [(b"authorization", fx.member.authorization(scope["method"], target, body).encode())], body

    return Service("cgs", app, Credentials(app, sign), AZURE_ERROR, path_values={
        "contract_id": (CONTRACT,), "secret_id": (secret_id,), "secret_name": ("s2",), "document_id": ("d1", "d2"),
        "proposal_id": (proposal["proposalId"],), "member_id": (fx.member.member_id,),
        "option": ("execution", "logging", "telemetry"), "verb": ("enable", "disable")},
        # CCF's governance reads and CGS's deployment spec need no credentials; writes (`…:verb`) do.
        open_paths=re.compile(r"^(/node/ready/app|(/app)?/oidc/(\.well-known/openid-configuration|keys)|/gov/service/members(/[^/:]+)?"
                              r"|/gov/members/proposals(/[^/:]+(/actions|/ballots/[^/:]+)?)?"
                              r"|/app/contracts/[^/]+/deploymentspec)$"))


def keyvault(fx: Fixtures) -> Service:
    tls = fx.ca.issue_server_cert("vault-signer", directory=fx.directory / "vault-signer")
    app = build_keyvault(issuers=[TrustedIssuer.from_jwks_file(fx.dev_tokens.issuer, fx.dev_tokens.jwks_file)],
                         challenge_authority=f"https://login.test/{fx.dev_tokens.tenant_id}",
                         signer=ResponseSigner(tls.cert_file, tls.key_file), ca_file=None)
    token = fx.dev_tokens.credential().get_token("https://vault.azure.net/.default").token

    async def sign(scope: Scope, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        # Every Key Vault call names its api-version; the OpenAPI leaves it out (the bearer check reads it).
        if b"api-version=" not in scope.get("query_string", b""):
            scope["query_string"] = b"&".join(q for q in (scope.get("query_string", b""), b"api-version=7.4") if q)
        return [(b"authorization", f"Bearer {token}".encode())], body

    policy = b64url_encode(json.dumps(sevsnp_policy(MAA_URL, "4d" * 32)).encode())
    asyncio.run(_seed(app, f"Bearer {token}", [
        ("PUT", "/secrets/s1", {"value": "secret value"}),
        ("POST", "/keys/k1/create", {"kty": "RSA-HSM", "attributes": {"exportable": True},
                                     "release_policy": {"data": policy}})]))
    return Service("keyvault", app, Credentials(app, sign), AZURE_ERROR, path_values={"name": ("k1", "s1")},
                   open_paths=re.compile(r"^$"))


async def _seed(app: ASGIApp, authorization: str, requests: list[tuple[str, str, Any]]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://vault.test") as client:
        for method, path, body in requests:
            answer = await client.request(method, path, params={"api-version": "7.4"}, json=body,
                                          headers={"authorization": authorization})
            assert answer.status_code == 200, answer.text


def maa(fx: Fixtures) -> Service:
    app = create_maa_app(Trust.default().trusting_mock_platform(fx.platform.directory), TokenSigner.generate(),
                         MAA_URL)
    return Service("maa", app, app, AZURE_ERROR)


def entra(fx: Fixtures) -> Service:
    credentials = CredentialSource([FederatedCredential("client", f"{CLOSED_LOOPBACK}/oidc", "subject")], None)
    app = build_entra(credentials, IssuerKeys(None), TokenIssuer(rsa.generate_private_key(65537, 2048)),
                      {"url": "https://entra.test"})
    return Service("entra", app, app, AAD_ERROR)


def skr(fx: Fixtures, maa_app: ASGIApp, vault_app: ASGIApp) -> Service:
    token = fx.dev_tokens.credential().get_token("https://vault.azure.net/.default").token
    releaser = KeyReleaser(fx.provider(), ca_bundle=None, token_source=lambda _scope: token,
                           destinations=Destinations(frozenset({MAA_URL}), frozenset({VAULT_URL})))
    releaser.http = httpx.AsyncClient(transport=HostRouter({MAA_URL: maa_app, VAULT_URL: vault_app}), timeout=10)
    app = build_skr(releaser)
    # skr answers 502 when the attestation service or vault a request names does not answer as it should.
    return Service("skr", app, app, PLAIN_ERROR, frozenset({502}))


def governance(fx: Fixtures, cgs_app: ASGIApp, skr_app: ASGIApp) -> Service:
    client = CgsRoomClient(CGS_URL, CONTRACT, skr_url=SKR_URL)
    client._http = httpx.AsyncClient(transport=HostRouter({CGS_URL: cgs_app, SKR_URL: skr_app}), timeout=10)
    token = "sidecar-token"
    app = build_governance(client, GovernanceConfig(CONTRACT, consent_poll_interval_s=0, sidecar_token=token))

    async def sign(_scope: Scope, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        return [(b"authorization", f"Bearer {token}".encode())], body

    return Service("governance", app, Credentials(app, sign), AZURE_ERROR, frozenset({502}), path_values={
        "secret_id": (f"{fx.member.member_id}_s1",), "document_id": ("d1",)})


def identity(fx: Fixtures) -> Service:
    header = "identity-header"
    app = build_identity(IdentityConfig(governance_url=CLOSED_LOOPBACK, entra_endpoint=CLOSED_LOOPBACK,
                                        tenant_id="tenant", client_id="client", identity_header=header))

    async def sign(_scope: Scope, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        return [(b"metadata", b"true"), (b"x-identity-header", header.encode())], body

    # Its upstream (governance) is a closed port here: a token request that passes every check ends in 503.
    return Service("identity", app, Credentials(app, sign), IMDS_ERROR, frozenset({503}),
                   open_paths=re.compile(r"^/status$"))


def launcher(fx: Fixtures, spec_file: Path) -> Service:
    endpoints = {"maa_endpoint": MAA_URL, "keyvault_url": VAULT_URL, "cgs_endpoint": CGS_URL,
                 "entra_endpoint": "https://entra.test", "storage_url": "https://storage.test/devstoreaccount1",
                 "ca_bundle": "/nonexistent/ca.pem", "mock_platform_dir": str(fx.platform.directory),
                 "entra_tenant_id": "tenant"}
    # Never prepared (no sidecars to wait for), so it never launches: a start is refused (409) whatever is sent.
    config = LauncherConfig(spec=load_spec(spec_file, variables=endpoints), port=0, mount_root=fx.directory / "mnt",
                            netns=None, sidecar_status_urls={}, governance_url=CLOSED_LOOPBACK,
                            telemetry_url=None)
    app = build_launcher(Launcher(config))
    return Service("launcher", app, app, AZURE_ERROR, path_values={"name": (config.spec.application.name,)})


def telemetry(fx: Fixtures) -> Service:
    buffer = EncryptedBuffer(fx.directory / "telemetry.buffer")
    # No sinks: an export request is refused (404) before governance would be asked.
    app = build_telemetry(buffer, Exporter(buffer, None, [], room="fuzz"))
    return Service("telemetry", app, app, AZURE_ERROR)
