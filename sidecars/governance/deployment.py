"""The governed deployment: which ARM template the contract's members accepted, and whether a template is it.

CGS keeps one accepted deployment spec per contract (the `set_deployment_spec` proposal, decided by the
contract's members; see the CGS stand-in's `store`) and answers `POST /app/contracts/{id}/deploymentspec`
with `{proposalIds: [open proposals], data: <the accepted template, or {}>}` to anyone, as azure-cleanroom's
CGS does. A template is the accepted one when its canonical JSON hash (`template_sha256`) is the accepted
template's: `ccr governance deployment show --verify FILE` (a member checking what the operator deployed)
and `ccr aci run` (refusing an ungoverned template) both call `verify_deployment`.

What CGS answers is read as untrusted input (bounded, shape-checked): a wrong CGS endpoint must give one
line, never a traceback, and never a pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..common.deploymentspec import MAX_TEMPLATE_BYTES, template_sha256
from ..common.errors import CcrError, ConfigError, RemoteServiceError
from ..common.transports import http_transport
from ..common.untrusted import DocumentLimits, UntrustedInputError, decode_utf8, load_json, read_bounded

__all__ = ["AcceptedDeployment", "DeploymentNotAccepted", "accepted_deployment", "cce_policy_host_data",
           "read_template", "template_sha256", "verify_deployment"]

#: An ARM template is a deep-ish JSON document whose ccePolicy string is most of its bytes.
TEMPLATE_LIMITS = DocumentLimits(max_bytes=MAX_TEMPLATE_BYTES, max_chars=MAX_TEMPLATE_BYTES)
#: CGS's answer wraps the template with the ids of open proposals.
ANSWER_LIMITS = DocumentLimits(max_bytes=2 * MAX_TEMPLATE_BYTES, max_chars=2 * MAX_TEMPLATE_BYTES)


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, refused once it passes `max_bytes` (a hostile or wrong endpoint may send without end)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise RemoteServiceError("CGS", f"its deploymentspec answer is over {max_bytes} bytes")
    return bytes(body)


class DeploymentNotAccepted(CcrError):
    """The template is not the one the contract's members accepted (or none is accepted)."""

    def __init__(self, message: str):
        super().__init__(message, code="DeploymentNotAccepted")


@dataclass(frozen=True)
class AcceptedDeployment:
    contract_id: str
    template: dict[str, Any]
    proposal_id: str  # the proposal that accepted it ("" if CGS does not say)
    open_proposal_ids: tuple[str, ...]  # deployment specs proposed and not yet decided

    @property
    def sha256(self) -> str:
        return template_sha256(self.template)


def read_template(path: str | Path) -> dict[str, Any]:
    """An ARM template file as a JSON object, bounded; every problem is one line naming the file."""
    try:
        template = load_json(read_bounded(Path(path), TEMPLATE_LIMITS), TEMPLATE_LIMITS)
    except OSError as exc:
        raise ConfigError(f"template {path}: {exc.strerror or exc}") from None
    except UntrustedInputError as exc:
        raise ConfigError(f"template {path}: the file {exc}") from None
    if not isinstance(template, dict) or not template:
        raise ConfigError(f"template {path}: expected an ARM template (a non-empty JSON object)")
    return template


def cce_policy_host_data(template: dict[str, Any]) -> str:
    """HOST_DATA of the template's container group: sha256 of its base64-decoded `ccePolicy` (what the
    hardware reports and the clean room policy admits)."""
    try:
        resources = [r for r in template["resources"]
                     if isinstance(r, dict) and r.get("type") == "Microsoft.ContainerInstance/containerGroups"]
        (group,) = resources
        encoded = group["properties"]["confidentialComputeProperties"]["ccePolicy"]
        return hashlib.sha256(base64.b64decode(encoded, validate=True)).hexdigest()
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ConfigError("the template has no single Confidential container group with a base64 ccePolicy") from None


def accepted_deployment(cgs_url: str, contract_id: str, *, ca_bundle: str | None = None,
                        timeout: float = 10.0) -> AcceptedDeployment:
    """What CGS says the contract's members accepted; raises DeploymentNotAccepted when nothing is."""
    target = f"{cgs_url.rstrip('/')}/app/contracts/{quote(contract_id, safe='')}/deploymentspec"
    try:
        with httpx.Client(transport=http_transport(ca_bundle), timeout=timeout) as client, \
                client.stream("POST", target) as response:
            if response.status_code == 404:
                raise DeploymentNotAccepted(f"contract {contract_id!r} does not exist at {cgs_url}")
            if response.status_code != 200:
                raise RemoteServiceError("CGS", f"POST deploymentspec of {contract_id!r} answered "
                                                f"{response.status_code}")
            body = _read_capped(response, ANSWER_LIMITS.max_bytes)
    except httpx.HTTPError as exc:
        raise RemoteServiceError("CGS", f"{cgs_url} unreachable: {exc}") from None
    try:
        answer = load_json(decode_utf8(body, ANSWER_LIMITS), ANSWER_LIMITS)
    except UntrustedInputError as exc:
        raise RemoteServiceError("CGS", f"its deploymentspec answer {exc}") from None
    data, open_ids = (answer.get("data"), answer.get("proposalIds", [])) if isinstance(answer, dict) else (None, None)
    if not isinstance(data, dict) or not isinstance(open_ids, list):
        raise RemoteServiceError("CGS", "its deploymentspec answer is not {proposalIds: [...], data: {...}}")
    open_ids = tuple(str(p) for p in open_ids)
    if not data:
        pending = f" ({len(open_ids)} proposal(s) open: {', '.join(open_ids)})" if open_ids else ""
        raise DeploymentNotAccepted(f"contract {contract_id!r} has no accepted deployment spec{pending}")
    return AcceptedDeployment(contract_id, data, str(answer.get("proposalId") or ""), open_ids)


def verify_deployment(cgs_url: str, contract_id: str, template: dict[str, Any], *, ca_bundle: str | None = None,
                      timeout: float = 10.0) -> AcceptedDeployment:
    """Returns what was accepted when `template` is it (same canonical JSON); otherwise raises
    DeploymentNotAccepted with one line naming both hashes and the first place they differ."""
    accepted = accepted_deployment(cgs_url, contract_id, ca_bundle=ca_bundle, timeout=timeout)
    given = template_sha256(template)
    if given != accepted.sha256:
        raise DeploymentNotAccepted(
            f"the template (sha256 {given}) is not the deployment the members of {contract_id!r} accepted "
            f"(sha256 {accepted.sha256}, proposal {accepted.proposal_id or '?'}): first difference at "
            f"{first_difference(accepted.template, template)}")
    return accepted


def first_difference(accepted: Any, given: Any, path: str = "$") -> str:
    """The JSON path of the first value that differs (depth-first, keys sorted), for the one-line error."""
    if isinstance(accepted, dict) and isinstance(given, dict):
        for key in sorted(set(accepted) | set(given)):
            if key not in accepted or key not in given:
                return f"{path}.{key} ({'added' if key in given else 'removed'})"
            if accepted[key] != given[key]:
                return first_difference(accepted[key], given[key], f"{path}.{key}")
    elif isinstance(accepted, list) and isinstance(given, list):
        for index, (a, g) in enumerate(zip(accepted, given, strict=False)):
            if a != g:
                return first_difference(a, g, f"{path}[{index}]")
        if len(accepted) != len(given):
            return f"{path} (length {len(accepted)} → {len(given)})"
    return path


def contract_of_template(template: dict[str, Any]) -> str | None:
    """The contract id the template's containers carry in CCR_SPEC (the resolved spec), when they all name
    the same one; None otherwise."""
    found: set[str] = set()
    for resource in template.get("resources") or []:
        properties = resource.get("properties") if isinstance(resource, dict) else None
        if not isinstance(properties, dict):
            continue
        for container in [*(properties.get("initContainers") or []), *(properties.get("containers") or [])]:
            env = (container.get("properties") or {}).get("environmentVariables") if isinstance(container, dict) else []
            for variable in env if isinstance(env, list) else []:
                if isinstance(variable, dict) and variable.get("name") == "CCR_SPEC":
                    try:
                        found.add(str(load_json(str(variable.get("value", "")))["contract"]["id"]))
                    except (UntrustedInputError, KeyError, TypeError):
                        return None
    return found.pop() if len(found) == 1 else None
