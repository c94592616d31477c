"""Signing a person in: OIDC's authorization code flow with PKCE, as Entra answers a public client (a
workspace on the party's machine).

`GET /{tenant}/oauth2/v2.0/authorize?client_id&response_type=code&redirect_uri&scope=openid…&state&nonce&
code_challenge&code_challenge_method=S256` shows a sign-in form (e-mail, password; the stand-in's users
come from `--user EMAIL:PASSWORD` and STATE_DIR/users.json, `[{email, password, name}]`, re-read when it
changes); posting it with the right password redirects to `redirect_uri?code=…&state=…`.
`POST /{tenant}/oauth2/v2.0/token` with `grant_type=authorization_code`, `code`, `client_id`,
`redirect_uri` and `code_verifier` answers `{token_type, scope, expires_in, id_token, access_token}` once:
the code is single-use (a replay is refused, as is every later use), expires after `CODE_LIFETIME_S`, is
bound to its client and redirect URI, and is redeemed only with the verifier whose SHA-256 is the
challenge. PKCE is required and only S256 is taken (`plain` would hand the secret to whoever sees the
authorization request). A redirect URI is a loopback `http://127.0.0.1|localhost:PORT/…` (a native app)
or https; nothing is ever redirected to a URI that failed these checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

if TYPE_CHECKING:
    from .app import OAuthError, TokenIssuer

CODE_LIFETIME_S = 300
MAX_PARAM_CHARS = 2048
MAX_PENDING_CODES = 10_000
#: RFC 7636: the verifier is 43..128 unreserved characters; the S256 challenge is 43 base64url characters
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class User:
    email: str
    password: str
    name: str


class UserSource:
    """The people who can sign in: fixed ones plus a JSON file re-read when it changes."""

    def __init__(self, fixed: list[User], path: Path | None):
        self.fixed, self.path = fixed, path
        self._mtime: float | None = None
        self._from_file: list[User] = []

    @staticmethod
    def parse(text: str) -> User:
        """`EMAIL:PASSWORD` (the command-line form)."""
        email, sep, password = text.partition(":")
        if not sep or "@" not in email or not password:
            raise ValueError(f"{text.split(':', 1)[0]!r}: expected EMAIL:PASSWORD")
        return User(email.lower(), password, email.split("@", 1)[0])

    def find(self, email: str) -> User | None:
        if self.path is not None and self.path.exists():
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                entries = json.loads(self.path.read_text() or "[]")
                self._from_file = [User(str(e["email"]).lower(), str(e["password"]),
                                        str(e.get("name") or str(e["email"]).split("@", 1)[0])) for e in entries]
                self._mtime = mtime
        wanted = email.strip().lower()
        return next((u for u in self.fixed + self._from_file if u.email == wanted), None)


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    nonce: str
    code_challenge: str


@dataclass(frozen=True)
class IssuedCode:
    request: AuthorizationRequest
    tenant: str
    user: User
    expires_at: float


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _redirect_uri_allowed(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.fragment or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.netloc.rsplit(":", 1)[0] in LOOPBACK_HOSTS


class SignIn:
    def __init__(self, users: UserSource, tokens: TokenIssuer, oauth_error: type[OAuthError],
                 base_url: dict[str, str]):
        self.users, self.tokens, self.error, self.base_url = users, tokens, oauth_error, base_url
        self._codes: dict[str, IssuedCode] = {}
        self._lock = threading.Lock()

    # -- /authorize
    def authorization_request(self, params: dict[str, str]) -> AuthorizationRequest:
        """The request's parameters, checked; any problem is a 400 shown to the person (never a redirect)."""
        def bad(code: int, text: str) -> OAuthError:
            return self.error(400, "invalid_request", code, text)

        if any(len(v) > MAX_PARAM_CHARS for v in params.values()):
            raise bad(90015, f"a parameter is longer than {MAX_PARAM_CHARS} characters")
        client_id = params.get("client_id", "")
        if not CLIENT_ID.fullmatch(client_id):
            raise bad(900144, "The request body must contain the following parameter: 'client_id'.")
        redirect_uri = params.get("redirect_uri", "")
        if not _redirect_uri_allowed(redirect_uri):
            raise bad(50011, "The redirect URI must be a loopback http://127.0.0.1:PORT/… URI or https.")
        if params.get("response_type") != "code":
            raise self.error(400, "unsupported_response_type", 70005, "response_type must be 'code'")
        scope = params.get("scope", "")
        if "openid" not in scope.split():
            raise bad(900144, "scope must include 'openid'")
        method = params.get("code_challenge_method", "")
        if method != "S256":
            raise bad(5000751, f"code_challenge_method {method[:16]!r} is not supported: PKCE with S256 is "
                               "required")
        challenge = params.get("code_challenge", "")
        if not CHALLENGE.fullmatch(challenge):
            raise bad(5000752, "code_challenge must be the 43-character base64url SHA-256 of the verifier")
        return AuthorizationRequest(client_id, redirect_uri, scope, params.get("state", ""), params.get("nonce", ""),
                                    challenge)

    def issue_code(self, tenant: str, request: AuthorizationRequest, user: User) -> str:
        code = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            for old in [c for c, issued in self._codes.items() if issued.expires_at < now]:
                del self._codes[old]
            if len(self._codes) >= MAX_PENDING_CODES:
                raise self.error(503, "temporarily_unavailable", 90033, "too many sign-ins in progress")
            self._codes[code] = IssuedCode(request, tenant, user, now + CODE_LIFETIME_S)
        return code

    # -- /token, grant_type=authorization_code
    def redeem(self, tenant: str, form: dict[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        with self._lock:
            issued = self._codes.pop(code, None)  # single use: whatever happens next, the code is spent
        if issued is None:
            raise self.error(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed or "
                                                          "was never issued.")
        if issued.expires_at < time.time():
            raise self.error(400, "invalid_grant", 70008, "The provided authorization code has expired.")
        request = issued.request
        if issued.tenant != tenant or form.get("client_id") != request.client_id:
            raise self.error(400, "invalid_grant", 70000, "The code was issued to another client or tenant.")
        if form.get("redirect_uri") != request.redirect_uri:
            raise self.error(400, "invalid_grant", 50148, "The redirect_uri does not match the one the code "
                                                          "was issued for.")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.fullmatch(verifier):
            raise self.error(400, "invalid_request", 50148, "code_verifier must be 43 to 128 unreserved "
                                                            "characters (PKCE)")
        if not hmac.compare_digest(s256(verifier), request.code_challenge):
            raise self.error(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge "
                                                           "supplied in the authorization request.")
        id_token = self.tokens.id_token(self.issuer(tenant), tenant, request.client_id, issued.user.email,
                                        issued.user.name, request.nonce)
        access_token, _ = self.tokens.access_token(tenant, request.client_id, request.client_id)
        return {"token_type": "Bearer", "scope": request.scope, "expires_in": self.tokens.lifetime_s,
                "ext_expires_in": self.tokens.lifetime_s, "id_token": id_token, "access_token": access_token}

    def issuer(self, tenant: str) -> str:
        return f"{self.base_url['url']}/{tenant}/v2.0"


def _form_page(request: AuthorizationRequest, tenant: str, problem: str = "") -> str:
    e = html.escape
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (
        ("client_id", request.client_id), ("redirect_uri", request.redirect_uri), ("response_type", "code"),
        ("scope", request.scope), ("state", request.state), ("nonce", request.nonce),
        ("code_challenge", request.code_challenge), ("code_challenge_method", "S256")))
    alert = f'<p role="alert" id="problem">{e(problem)}</p>' if problem else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>"
            "<main><h1>Sign in</h1>"
            f"<p>to {e(request.client_id)} (tenant {e(tenant)})</p>{alert}"
            f"<form method=\"post\">{hidden}"
            "<p><label for=\"email\">E-mail</label> <input id=\"email\" name=\"login\" type=\"email\" "
            "autocomplete=\"username\" required></p>"
            "<p><label for=\"password\">Password</label> <input id=\"password\" name=\"password\" "
            "type=\"password\" autocomplete=\"current-password\" required></p>"
            "<p><button type=\"submit\">Sign in</button></p></form></main></body></html>")


def add_routes(app: FastAPI, signin: SignIn) -> None:
    headers = {"cache-control": "no-store", "content-security-policy": "default-src 'none'; form-action 'self' "
               "http: https:", "x-frame-options": "DENY"}

    @app.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize_form(tenant: str, request: Request) -> HTMLResponse:
        auth = signin.authorization_request(dict(request.query_params))
        return HTMLResponse(_form_page(auth, tenant), headers=headers)

    @app.post("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        auth = signin.authorization_request(form)
        user = signin.users.find(form.get("login", ""))
        if user is None or not hmac.compare_digest(user.password.encode(), form.get("password", "").encode()):
            return HTMLResponse(_form_page(auth, tenant, "That e-mail and password do not match an account."),
                                status_code=401, headers=headers)
        code = signin.issue_code(tenant, auth, user)
        query = urlencode({"code": code, "state": auth.state, "session_state": str(uuid.uuid4())})
        separator = "&" if urlsplit(auth.redirect_uri).query else "?"
        return RedirectResponse(f"{auth.redirect_uri}{separator}{query}", status_code=302, headers=headers)
