"""The clean room spec: the one place where a field's meaning is defined.

A spec is YAML. Everything else is rendered from it: each sidecar's configuration, `ccr room up`,
docker-compose.yml, the ARM template, the CCE policy and the parties' key release policies.

Endpoints differ between a local room and Azure, so string values may contain variables: `${name}` or
`${name:-default}`. Values come from an endpoints file (`ccr emulators start` writes one) and then from
the environment; an undefined variable is an error naming the field. Nothing is resolved lazily: a
malformed spec fails at load, with one line per problem naming the field path, before anything starts.

What the container policy enforces (image pinned by digest, non-root user, no privileges, only the
declared mounts) is deliberately *not* rejected here: a spec asking for uid 0 loads, and the launcher's
policy refuses it with the rule named, so the same policy protects specs that did not come through us.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from .common.errors import SpecError

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower-case letters, digits and '-'")]
# Azure blob container names: 3-63 chars, lower-case letters, digits and single hyphens.
ContainerName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$",
                                      description="3-63 lower-case letters, digits and single hyphens")]
HttpsUrl = Annotated[AnyHttpUrl, Field(description="an http(s) URL")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncryptionMode(StrEnum):
    """How a volume's data is protected in storage.

    CSE: client-side encryption in the room (the default and the recommended mode): storage only ever
    holds ciphertext bound to the blob's place. CPK: server-side encryption with the customer-provided key
    (the DEK), sent to storage with each request. SSE: storage's own encryption; storage sees clear text.
    """

    CSE = "CSE"
    CPK = "CPK"
    SSE = "SSE"


class KeyReference(_Model):
    """Where a volume's keys live: the owner's KEK (released only by SKR) and the wrapped DEK secret."""

    vault_url: HttpsUrl = Field(description="Key Vault or managed HSM holding the KEK")
    kek_name: Name
    dek_secret_name: Name = Field(description="Key Vault secret holding the DEK wrapped with the KEK")
    secret_vault_url: HttpsUrl | None = Field(
        None, description="Key Vault holding the wrapped DEK secret, when it is not vault_url")
    maa_endpoint: HttpsUrl = Field(description="attestation service whose token the KEK's policy trusts")

    @property
    def dek_vault_url(self) -> str:
        return str(self.secret_vault_url or self.vault_url)


class Identity(_Model):
    """A federated identity the room uses to reach a party's storage or vault (no secret involved)."""

    client_id: str
    tenant_id: str = "common"


class BlobStore(_Model):
    account_url: HttpsUrl = Field(description="blob service URL, e.g. https://ACCOUNT.blob.core.windows.net")
    container: ContainerName
    identity: Identity | None = None


class Encryption(_Model):
    mode: EncryptionMode = EncryptionMode.CSE
    key: KeyReference | None = None

    @model_validator(mode="after")
    def _key_matches_mode(self) -> Encryption:
        if self.mode in (EncryptionMode.CSE, EncryptionMode.CPK) and self.key is None:
            raise ValueError(f"mode {self.mode.value} needs a key reference (encryption.key)")
        if self.mode is EncryptionMode.SSE and self.key is not None:
            raise ValueError("mode SSE uses no key of ours: remove encryption.key or choose CSE")
        return self


class Volume(_Model):
    name: Name
    owner: str | None = Field(None, description="the contract member who owns the data")
    store: BlobStore
    encryption: Encryption = Field(default_factory=Encryption)
    mount_path: str | None = Field(None, description="where the app sees it; default /mnt/remote/NAME")

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None:
            path = PurePosixPath(value)
            if not path.is_absolute() or ".." in path.parts:
                raise ValueError("must be an absolute path without '..'")
        return value

    @property
    def path_in_app(self) -> str:
        return self.mount_path or f"/mnt/remote/{self.name}"


class Datasource(Volume):
    """Read-only clear-text view of a party's encrypted data."""


class Datasink(Volume):
    """Write-only (sequential) output, encrypted before it leaves the room."""


class Resources(_Model):
    cpu: PositiveFloat = Field(description="cores")
    memory_gb: PositiveFloat


class AppMount(_Model):
    """An extra mount the app asks for. Only datasources/datasinks are allowed by the container policy."""

    source: str
    target: str
    mode: Literal["ro", "rw"] = "ro"


#: The room's sidecar APIs an app may call on localhost (ARCHITECTURE §4). Each is a way for the app to
#: reach out of its no-network confinement, so none is open unless the contract lists it.
SidecarApi = Literal["governance", "skr", "identity", "telemetry"]


class Application(_Model):
    name: Name
    image: str = Field(description="pinned image reference: REPO@sha256:DIGEST")
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    user: str = Field("1000:1000", description="uid[:gid] the app runs as; the container policy forbids 0")
    mode: Literal["job", "api"] = "job"
    start: Literal["auto", "manual"] = "auto"
    resources: Resources
    privileged: bool = False
    capabilities: list[str] = Field(default_factory=list)
    mounts: list[AppMount] = Field(default_factory=list)
    working_dir: str | None = None
    sidecar_apis: list[SidecarApi] = Field(
        default_factory=list,
        description="sidecars the app may call on localhost: governance (secrets, audit events, tokens), skr "
                    "(attestation; key release only from the spec's vaults), identity (managed identity "
                    "tokens), telemetry (OTLP). Default: none")
    key_vaults: list[HttpsUrl] = Field(
        default_factory=list,
        description="vaults the app may release keys from through skr, besides those of the spec's volumes")

    @field_validator("user")
    @classmethod
    def _user_format(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(:\d+)?", value):
            raise ValueError("must be a numeric uid or uid:gid, e.g. 1000:1000")
        return value

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        parts = self.user.split(":")
        return int(parts[1]) if len(parts) > 1 else self.uid


class Endpoint(_Model):
    """An API the app serves; clients reach it only through the proxy, which applies `policy`."""

    name: Name
    port: int = Field(ge=1, le=65535, description="the app's port inside the room")
    protocol: Literal["http"] = "http"
    policy: str | None = Field(None, description="Rego file (relative to the spec) the proxy applies")
    policy_rego: str | None = Field(
        None, description="the policy's Rego text, taken verbatim (no ${} variables). Loading a spec file fills "
                          "it in from `policy`, so the resolved spec (CCR_SPEC, measured by HOST_DATA) carries "
                          "the exact Rego the proxy enforces; it may also be written here instead of a file. "
                          "When present, `policy` only names the file it came from")


class EgressRule(_Model):
    """One allowed destination. `http`/`https` go through the HTTP proxy (hostname checked, upstream TLS
    verified); `tcp` allows one ip:port through the TCP proxy."""

    host: str
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "https", "tcp"] = "https"


class Egress(_Model):
    allow: list[EgressRule] = Field(default_factory=list)
    dns: Literal["tcp", "none"] = "none"

    @property
    def none(self) -> bool:
        return not self.allow


class Sink(_Model):
    """Where consented telemetry or logs are exported, encrypted like a datasink."""

    store: BlobStore
    encryption: Encryption = Field(default_factory=Encryption)
    export_interval_s: PositiveFloat | None = Field(None, description="also export continuously")


class Telemetry(_Model):
    telemetry_sink: Sink | None = None
    log_sink: Sink | None = None


class Governance(_Model):
    endpoint: HttpsUrl = Field(description="the clean room governance service (CGS)")
    ca_bundle: str | None = Field(None, description="PEM file trusted for the endpoint's certificate")
    consent_poll_interval_s: PositiveFloat = 5.0


class Contract(_Model):
    id: Name
    members: list[str] = Field(default_factory=list)
    governance: Governance


class CleanRoomSpec(_Model):
    api_version: Literal["ccr/v1"] = Field("ccr/v1", alias="apiVersion")
    name: Name
    contract: Contract
    maa_endpoint: HttpsUrl = Field(description="the attestation service the room uses")
    datasources: list[Datasource] = Field(default_factory=list)
    datasinks: list[Datasink] = Field(default_factory=list)
    application: Application
    endpoints: list[Endpoint] = Field(default_factory=list)
    egress: Egress = Field(default_factory=Egress)
    telemetry: Telemetry = Field(default_factory=Telemetry)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> CleanRoomSpec:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for kind, volumes in (("datasources", self.datasources), ("datasinks", self.datasinks)):
            for i, vol in enumerate(volumes):
                if vol.name in seen:
                    problems.append(f"{kind}[{i}].name: {vol.name!r} is already used by {seen[vol.name]}")
                seen[vol.name] = f"{kind}[{i}]"
                if self.contract.members and vol.owner and vol.owner not in self.contract.members:
                    problems.append(f"{kind}[{i}].owner: {vol.owner!r} is not a contract member")
        paths: dict[str, str] = {}
        for where, vol in self.volumes_with_location():
            if vol.path_in_app in paths:
                problems.append(f"{where}.mount_path: {vol.path_in_app} is also used by {paths[vol.path_in_app]}")
            paths[vol.path_in_app] = where
        ports = [e.port for e in self.endpoints]
        for i, endpoint in enumerate(self.endpoints):
            if ports.count(endpoint.port) > 1:
                problems.append(f"endpoints[{i}].port: {endpoint.port} is declared twice")
        if self.application.key_vaults and "skr" not in self.application.sidecar_apis:
            problems.append("application.key_vaults: the app can use them only with skr in application.sidecar_apis")
        if self.application.mode == "api" and not self.endpoints:
            problems.append("endpoints: an api application needs at least one endpoint")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def volumes_with_location(self) -> list[tuple[str, Volume]]:
        return ([(f"datasources[{i}]", v) for i, v in enumerate(self.datasources)]
                + [(f"datasinks[{i}]", v) for i, v in enumerate(self.datasinks)])

    def blob_targets(self) -> list[Volume | Sink]:
        """Everything the room reads or writes in blob storage, each with its store and encryption: the
        datasources, the datasinks and the telemetry/log sinks."""
        sinks = [s for s in (self.telemetry.telemetry_sink, self.telemetry.log_sink) if s is not None]
        return [*(vol for _, vol in self.volumes_with_location()), *sinks]

    def volume(self, name: str) -> Volume:
        for _, vol in self.volumes_with_location():
            if vol.name == name:
                return vol
        raise KeyError(name)


# --- loading -----------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::-([^}]*))?\}")


#: Fields whose text is used as is: a policy's Rego is measured and enforced byte for byte, so re-reading a
#: resolved spec (CCR_SPEC in a container) must not change it.
_VERBATIM_FIELDS = ("policy_rego",)


def _substitute(value: Any, variables: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if path.rpartition(".")[2] in _VERBATIM_FIELDS:
        return value
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in variables:
                return str(variables[name])
            if default is not None:
                return default
            problems.append(f"{path or 'spec'}: undefined variable ${{{name}}} "
                            "(pass --endpoints FILE, --var NAME=VALUE or set it in the environment)")
            return match.group(0)

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, variables, f"{path}.{k}" if path else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _error_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = _error_path(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        for line in message.splitlines():
            # Cross-checks already name their own field path.
            problems.append(line if not path else f"{path}: {line}")
    return problems


def endpoint_variables(path: str | Path) -> dict[str, str]:
    """Flat string values of an endpoints.json, usable as spec variables."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SpecError([f"cannot read endpoints file: {exc.strerror}"], str(path)) from exc
    except json.JSONDecodeError as exc:
        raise SpecError([f"not JSON: {exc.msg} at line {exc.lineno}"], str(path)) from exc
    return {k: str(v) for k, v in data.items() if isinstance(v, str | int | float)}


def parse_spec(data: Any, *, source: str = "spec", variables: Mapping[str, str] | None = None,
               base_dir: Path | None = None) -> CleanRoomSpec:
    """Validate already-parsed YAML/JSON data; raises SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(["the top level must be a mapping of fields"], source)
    merged = dict(os.environ)
    merged.update(variables or {})
    problems: list[str] = []
    data = _substitute(data, merged, "", problems)
    if problems:
        raise SpecError(problems, source)
    try:
        spec = CleanRoomSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc), source) from None
    if base_dir is not None:
        spec = _inline_policy_files(spec, base_dir, source)
    return spec


def _inline_policy_files(spec: CleanRoomSpec, base_dir: Path, source: str) -> CleanRoomSpec:
    """Each endpoint's `policy` file read into `policy_rego`: from here on the spec carries the Rego itself."""
    problems: list[str] = []
    endpoints: list[Endpoint] = []
    for i, endpoint in enumerate(spec.endpoints):
        if endpoint.policy and endpoint.policy_rego is None:
            try:
                text = (base_dir / endpoint.policy).read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(f"endpoints[{i}].policy: endpoint {endpoint.name}: cannot read {endpoint.policy} "
                                f"next to the spec: {exc.strerror}")
                continue
            except UnicodeDecodeError:
                problems.append(f"endpoints[{i}].policy: endpoint {endpoint.name}: {endpoint.policy} is not UTF-8 "
                                "text")
                continue
            endpoint = endpoint.model_copy(update={"policy_rego": text})
        endpoints.append(endpoint)
    if problems:
        raise SpecError(problems, source)
    return spec.model_copy(update={"endpoints": endpoints})


def load_spec(path: str | Path, *, variables: Mapping[str, str] | None = None) -> CleanRoomSpec:
    """Load and validate a spec file. Relative policy paths are resolved against its folder and the files'
    text inlined (`Endpoint.policy_rego`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"cannot read: {exc.strerror}"], str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], str(path)) from None
    return parse_spec(data, source=str(path), variables=variables, base_dir=path.parent)


def spec_directory(path: str | Path) -> Path:
    return Path(path).resolve().parent
