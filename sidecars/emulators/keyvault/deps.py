"""What the Key Vault stand-in's routers share: the vault with what verifies callers and signs releases, the
bearer-token check every route depends on, and the base of the request bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ...common.bodies import json_body
from ...common.errors import BadRequest
from .access import AccessTokenVerifier
from .jwks import JwksCache
from .signer import ResponseSigner
from .store import Vault


@dataclass(frozen=True)
class KeyVaultState:
    """Everything the routes share, kept on `app.state.keyvault`."""

    vault: Vault
    verifier: AccessTokenVerifier
    jwks: JwksCache
    signer: ResponseSigner


async def keyvault_state(request: Request) -> KeyVaultState:
    return request.app.state.keyvault


KeyVault = Annotated[KeyVaultState, Depends(keyvault_state)]


async def authenticate(request: Request, kv: KeyVault) -> None:
    """Runs before the body is read, so the SDK's body-less first request gets the 401 challenge."""
    request.state.caller = await kv.verifier.verify(request.headers.get("authorization"))
    if "api-version" not in request.query_params:
        raise BadRequest("The 'api-version' query parameter is missing.", code="BadParameter")


def vault_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# Key Vault's `nbf`/`exp`: seconds since the epoch, up to the end of year 9999 (what a date can hold).
UnixTime = Annotated[int, Field(ge=0, le=253402300799)]


class BodyIn(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def kv_body(model: type[BodyIn]) -> Any:
    """A route's JSON body, read only after `authenticate` (an app-wide dependency, so it runs first); Key Vault
    calls a malformed body a `BadParameter`."""
    return json_body(model, code="BadParameter")
