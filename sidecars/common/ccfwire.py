"""What CCF's governance wire asks of every request: the `api-version` query parameter.

CCF's governance endpoints (`/gov/members/proposals:create`, `/gov/service/members`, …) are versioned: each
request names the API version in `?api-version=`, and a request without one, or with one the service does
not serve, is answered 400 (`MissingApiVersionParameter`, `UnsupportedApiVersionValue`) before anything
else is looked at. The Azure clean room's cgs-client pins `2024-07-01` and sends it on every `/gov` request
except CCF's common `/gov/tx` (transaction status), which is not versioned; its `/app` requests (the CGS
application's own endpoints) carry no api-version. Our clients do the same, and the CGS stand-in checks it
(it serves only 2024-07-01, the shapes it implements).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

GOV_API_VERSION = "2024-07-01"
SUPPORTED_GOV_API_VERSIONS = (GOV_API_VERSION,)
API_VERSION_PARAM = "api-version"
#: CCF's common endpoints under /gov that take no api-version.
UNVERSIONED_GOV_PATHS = frozenset({"/gov/tx"})


def is_versioned_gov_path(path: str) -> bool:
    return (path == "/gov" or path.startswith("/gov/")) and path not in UNVERSIONED_GOV_PATHS


def with_api_version(target: str) -> str:
    """`target` (a path with an optional query) with `api-version` added when it is a versioned /gov path and
    does not name one already."""
    parts = urlsplit(target)
    if not is_versioned_gov_path(parts.path) or API_VERSION_PARAM in parse_qs(parts.query):
        return target
    return f"{target}{'&' if parts.query else '?'}{API_VERSION_PARAM}={GOV_API_VERSION}"


def api_version_error(path: str, query: str) -> tuple[str, str] | None:
    """CCF's refusal of a /gov request's api-version, as (code, message); None when it is served."""
    if not is_versioned_gov_path(path):
        return None
    supported = f"The supported api-versions are: {', '.join(SUPPORTED_GOV_API_VERSIONS)}"
    values = parse_qs(query, keep_blank_values=True).get(API_VERSION_PARAM)
    if not values:
        return ("MissingApiVersionParameter",
                f"The {API_VERSION_PARAM} query parameter (?{API_VERSION_PARAM}=) is required for all requests. "
                f"{supported}")
    if len(values) != 1 or values[0] not in SUPPORTED_GOV_API_VERSIONS:
        return "UnsupportedApiVersionValue", f"Unsupported api-version '{values[-1][:40]}'. {supported}"
    return None


class GovApiVersionMiddleware:
    """Answers a /gov request without a supported api-version 400 in CCF's error shape, before the route (and
    its authentication) runs, as CCF's `api_version_adapter` does."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = api_version_error(scope["path"], scope.get("query_string", b"").decode("latin-1"))
            if refused is not None:
                code, message = refused
                await JSONResponse({"error": {"code": code, "message": message}}, status_code=400)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)
