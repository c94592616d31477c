"""The Entra stand-in's sign-in (OIDC authorization code + PKCE S256), attacked: a plain or missing challenge,
a wrong verifier, a replayed or expired code, another client's or redirect URI's code, a redirect URI that is
not loopback or https, a wrong password. Only the whole, right flow yields an ID token."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from sidecars.emulators.entra import signin
from sidecars.emulators.entra.app import CredentialSource, IssuerKeys, TokenIssuer, build_app
from sidecars.emulators.entra.signin import User, UserSource

TENANT = "c0de0000-0000-4000-8000-00000000e002"
BASE = "https://entra.test"
CLIENT = "ccr-workspace"
REDIRECT = "http://127.0.0.1:8765/api/signin/callback"


@pytest.fixture(scope="module")
def tokens() -> TokenIssuer:
    return TokenIssuer(rsa.generate_private_key(65537, 2048))


@pytest.fixture
def client(tokens) -> TestClient:
    users = UserSource([User("bo@woodgrove.example", "correct horse", "Bo")], None)
    app = build_app(CredentialSource([], None), IssuerKeys(None), tokens, {"url": BASE}, users)
    return TestClient(app, base_url=BASE, follow_redirects=False)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize_params(challenge: str, **changes) -> dict[str, str]:
    params = {"client_id": CLIENT, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid email",
              "state": "s-123", "nonce": "n-456", "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


def sign_in(client: TestClient, challenge: str, password: str = "correct horse", **changes):
    return client.post(f"/{TENANT}/oauth2/v2.0/authorize",
                       data={**authorize_params(challenge, **changes), "login": "Bo@Woodgrove.example",
                             "password": password})


def code_of(response) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["s-123"]
    return query["code"][0]


def redeem(client: TestClient, code: str, verifier: str, **changes):
    form = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT, "redirect_uri": REDIRECT,
            "code_verifier": verifier}
    form.update(changes)
    return client.post(f"/{TENANT}/oauth2/v2.0/token", data={k: v for k, v in form.items() if v is not None})


def test_the_whole_flow_yields_an_id_token_bound_to_client_person_and_nonce(client, tokens):
    verifier, challenge = pkce()
    page = client.get(f"/{TENANT}/oauth2/v2.0/authorize", params=authorize_params(challenge))
    assert page.status_code == 200 and '<label for="email">' in page.text and 'id="password"' in page.text
    answer = redeem(client, code_of(sign_in(client, challenge)), verifier)
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["id_token"], tokens.key.public_key(), algorithms=["RS256"], audience=CLIENT,
                        issuer=f"{BASE}/{TENANT}/v2.0")
    assert claims["email"] == "bo@woodgrove.example" and claims["nonce"] == "n-456" and claims["tid"] == TENANT
    discovery = client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert discovery["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize("changes, aadsts", [
    ({"code_challenge_method": "plain"}, 5000751),
    ({"code_challenge_method": None}, 5000751),
    ({"code_challenge": None}, 5000752),
    ({"code_challenge": "short"}, 5000752),
    ({"redirect_uri": "http://evil.example/cb"}, 50011),
    ({"redirect_uri": "javascript:alert(1)"}, 50011),
    ({"redirect_uri": "https://user:pw@evil.example/cb"}, 50011),
    ({"response_type": "token"}, 70005),
    ({"scope": "email"}, 900144),
    ({"client_id": "../x"}, 900144),
])
def test_a_bad_authorization_request_is_refused_and_never_redirected(client, changes, aadsts):
    _verifier, challenge = pkce()
    if changes.get("code_challenge_method") == "plain":
        challenge = _verifier[:43]  # plain: the challenge would be the verifier itself
    for answer in (client.get(f"/{TENANT}/oauth2/v2.0/authorize", params=authorize_params(challenge, **changes)),
                   sign_in(client, challenge, **changes)):
        assert answer.status_code == 400 and "location" not in answer.headers
        assert answer.json()["error_codes"] == [aadsts]


def test_a_wrong_password_gets_no_code(client):
    _verifier, challenge = pkce()
    answer = sign_in(client, challenge, password="wrong")
    assert answer.status_code == 401 and "location" not in answer.headers and 'role="alert"' in answer.text


def test_a_wrong_verifier_is_refused_and_spends_the_code(client):
    verifier, challenge = pkce()
    code = code_of(sign_in(client, challenge))
    other, _ = pkce()
    wrong = redeem(client, code, other)
    assert wrong.status_code == 400 and wrong.json()["error_codes"] == [501481]
    # the thief's failed try spent it: the rightful verifier cannot redeem it either now
    assert redeem(client, code, verifier).json()["error_codes"] == [54005]


def test_a_replayed_code_is_refused(client):
    verifier, challenge = pkce()
    code = code_of(sign_in(client, challenge))
    assert redeem(client, code, verifier).status_code == 200
    replay = redeem(client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("changes, aadsts", [
    ({"code_verifier": None}, 50148),
    ({"client_id": "another-app"}, 70000),
    ({"redirect_uri": "http://127.0.0.1:9999/cb"}, 50148),
])
def test_a_code_redeems_only_with_its_client_redirect_uri_and_a_verifier(client, changes, aadsts):
    _verifier, challenge = pkce()
    code = code_of(sign_in(client, challenge))
    answer = redeem(client, code, _verifier, **changes)
    assert answer.status_code == 400 and answer.json()["error_codes"] == [aadsts]


def test_an_expired_code_is_refused(client, monkeypatch):
    verifier, challenge = pkce()
    code = code_of(sign_in(client, challenge))
    monkeypatch.setattr(signin.time, "time", lambda: 10**11)
    assert redeem(client, code, verifier).json()["error_codes"] == [70008]
