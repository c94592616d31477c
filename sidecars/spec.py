"""The clean room spec: the one place where a field's meaning is defined.

A spec is YAML. Everything else is rendered from it: each sidecar's configuration, `ccr room up`,
docker-compose.yml, the ARM template, the CCE policy and the parties' key release policies.

Endpoints differ between a local room and Azure, so string values may contain variables: `${name}` or
`${name:-default}`. Values come from an endpoints file (`ccr emulators start` writes one) and `--var`, and
only from them: never from the environment, where a hostile spec would find the loading party's secrets
(`${AWS_SECRET_ACCESS_KEY}`) and carry them into the contract `ccr governance setup` uploads, or, in a
container, values other than the ones measured. An undefined variable is an error naming the field.
Nothing is resolved lazily: a malformed spec fails at load, with one line per problem naming the field
path, before anything starts.

Every other rule a sidecar would refuse at start is decided here, so `ccr spec validate` and the room
agree: sinks are CSE, a `tcp` egress host is an IPv4 address, every service URL (vaults, attestation, CGS,
storage) is https, a policy parses in OPA, the resolved spec fits a sidecar's environment
(tests/unit/test_spec_rules.py lists them all, each with the sidecar that used to refuse it). Sidecars use
the validated values as they are.

A spec is untrusted input: a party may hand the others a hostile one. So loading is bounded (size, nesting,
aliases: `sidecars.common.untrusted`), a policy file is read only from inside the spec's folder, and what
the launcher's container policy (policies/container.rego) would refuse is refused here first, naming the
field: an unpinned image, uid or gid 0, privileges, added capabilities, a mount that is not one of the
spec's volumes at its path. The launcher still applies its policy to what it is about to run (the same
rules protect a launch that did not come from a validated spec, and check what only the launch knows: the
local image's digest). Egress never reaches the room itself or the platform (loopback, link-local,
unspecified, multicast, localhost names): the app reaches the room's sidecars only through
`application.sidecar_apis`. Rules that depend on the ports the sidecars use belong to the sidecars'
registry, and the room's own run-time addresses to the firewall, not here.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Hashable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    Tag,
    UrlConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .common.errors import SpecError
from .common.rego import RegoPolicyError, check_policy
from .common.untrusted import (
    MIB,
    UntrustedInputError,
    check_tree,
    contained_path_problem,
    load_json,
    load_yaml,
    read_bounded,
    read_contained,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower-case letters, digits and '-'")]
# Azure blob container names: 3-63 chars, lower-case letters, digits and single hyphens.
ContainerName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$",
                                      description="3-63 lower-case letters, digits and single hyphens")]
#: Every service the room contacts (attestation, vaults, CGS, storage) is reached over TLS: the room sends
#: tokens and attested requests there, and an http URL would hand them to anyone on the path. The local
#: stand-ins serve https too (`ccr emulators start`), so there is no exception for them.
HttpsUrl = Annotated[AnyHttpUrl, UrlConstraints(allowed_schemes=["https"]), Field(description="an https URL")]
#: (uid_t)-1 means "no uid" to the kernel: the largest uid or gid is one less.
MAX_UID = 4294967294
#: Linux refuses to exec a program when one string of its environment ("NAME=value" and its NUL) is longer
#: than MAX_ARG_STRLEN (32 pages, 128 KiB): E2BIG, "Argument list too long". Every rendering execs the
#: sidecars with the resolved spec in CCR_SPEC (podman, containerd, the C-ACI guest agent), so this is the
#: ceiling whatever the platform accepts; ACI documents no lower limit per variable.
MAX_ARG_STRLEN = 131072
MAX_SPEC_JSON_BYTES = MAX_ARG_STRLEN - len("CCR_SPEC=") - 1
#: A spec file, a policy file, an endpoints file: far more than a resolved spec can hold (comments aside),
#: far less than would make reading it an attack (sidecars.common.untrusted).
MAX_SPEC_FILE_BYTES = MIB
MAX_POLICY_FILE_BYTES = MIB
#: What the launcher's container policy accepts (policies/container.rego, `pinned_digest`).
PINNED_IMAGE = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
#: An http(s) egress host: a DNS name or an IPv4 address (253 characters: the longest DNS name).
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncryptionMode(StrEnum):
    """How a volume's data is protected in storage.

    CSE: client-side encryption in the room (the default and the recommended mode): storage only ever
    holds ciphertext bound to the object's place. CPK: Azure Blob's server-side encryption with the
    customer-provided key (the DEK), sent to storage with each request. SSE-C: S3's counterpart of CPK
    (the key travels with each request). SSE: storage's own encryption; storage sees clear text.
    """

    CSE = "CSE"
    CPK = "CPK"
    SSE_C = "SSE-C"
    SSE = "SSE"


#: The modes each store kind offers: CPK is Azure Blob's customer-provided key, SSE-C is S3's; a store
#: would otherwise be sent headers it ignores, and the data stored under its own key instead of ours.
MODES_OF_STORE = {
    "azure_blob": (EncryptionMode.CSE, EncryptionMode.CPK, EncryptionMode.SSE),
    "s3": (EncryptionMode.CSE, EncryptionMode.SSE_C, EncryptionMode.SSE),
}


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


def storage_account(account_url: str) -> str | None:
    """The storage account a blob service URL names: the first path segment of a path-style URL (Azurite, IP
    hosts), else the first label of the host (ACCOUNT.blob.core.windows.net); None when it names none."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    path = parts.path.strip("/")
    if path:
        return path.split("/")[0]
    if host and not host.replace(".", "").isdigit() and host != "localhost":
        return host.split(".")[0]
    return None


class BlobStore(_Model):
    # Left out of the resolved spec (the default when reading it back), so a spec written before S3 stores
    # keeps its canonical JSON, and so its HOST_DATA: `kind` adds nothing to what the room is told.
    kind: Literal["azure_blob"] = Field("azure_blob", exclude=True)
    account_url: HttpsUrl = Field(description="blob service URL, e.g. https://ACCOUNT.blob.core.windows.net")
    container: ContainerName
    identity: Identity | None = None

    @field_validator("account_url")
    @classmethod
    def _names_an_account(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # The storage clients (a volume's mount, a sink's export) need the account's name.
        if storage_account(str(value)) is None:
            raise ValueError("names no storage account: use https://ACCOUNT.blob.core.windows.net, or a "
                             "path-style https://HOST:PORT/ACCOUNT for an IP address or localhost")
        return value

    @property
    def short_place(self) -> str:
        return f"blob container {self.container}"

    @property
    def place(self) -> str:
        return f"{self.account_url} container {self.container}"


#: S3 bucket names (AWS's bucket naming rules for general purpose buckets): 3-63 characters, lower-case
#: letters, digits, dots and hyphens, beginning and ending with a letter or digit; the reserved prefixes
#: and suffixes and the IPv4-address form are refused by `_bucket_rules`.
BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                                  description="3-63 lower-case letters, digits, dots and hyphens")]
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: An AWS region: us-east-1, eu-central-2, us-gov-west-1, cn-north-1.
Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", description="an AWS region, e.g. us-east-1")]
#: An IAM role: arn:PARTITION:iam::ACCOUNT:role/PATH/NAME (IAM's character set for role paths and names).
RoleArn = Annotated[str, Field(pattern=r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
                               description="an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME")]
#: A CGS secret's id: the setting member's id, '_', the secret's name.
CgsSecretId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
                                   description="a CGS secret id, MEMBERID_NAME")]
#: S3 keys are at most 1024 bytes; a prefix leaves room for the object names under it.
MAX_S3_PREFIX_BYTES = 512


class S3Credentials(_Model):
    """How the room signs its S3 requests; exactly one of the two. Never a key in the spec: `secret` names a
    CGS secret the store's owner set, holding JSON {"access_key_id", "secret_access_key"}, which the room
    reads only after attestation (so the owner gives the room its key pair without handing it to the
    operator or the other members); `role_arn` is a role the room assumes with its federated identity token
    (AssumeRoleWithWebIdentity), so no long-lived key exists at all."""

    # CGS names a secret MEMBERID_NAME after the member who set it, so no other member can set this one.
    secret: CgsSecretId | None = Field(None, description="the CGS secret (MEMBERID_NAME, as `ccr governance secret "
                                                         "set` prints it) holding the access key pair")
    role_arn: RoleArn | None = Field(None, description="IAM role assumed with the room's federated token")

    @model_validator(mode="after")
    def _exactly_one(self) -> S3Credentials:
        if (self.secret is None) == (self.role_arn is None):
            raise ValueError("give exactly one of secret (a CGS secret holding the access key pair) or role_arn "
                             "(a role the room assumes with its federated token)")
        return self


class S3Store(_Model):
    """An S3 bucket (AWS, or any service speaking the S3 REST API) and a prefix in it."""

    kind: Literal["s3"]
    endpoint: HttpsUrl | None = Field(None, description="the S3 service; default https://s3.REGION.amazonaws.com")
    region: Region
    bucket: BucketName
    prefix: str = Field("", description="the objects' common key prefix, without leading or trailing '/'")
    addressing: Literal["path", "virtual"] = "virtual"
    credentials: S3Credentials
    identity: Identity | None = Field(None, description="the federated identity the room uses for the owner's vault "
                                                        "(the volume's keys)")

    @field_validator("bucket")
    @classmethod
    def _bucket_rules(cls, value: str) -> str:
        if ".." in value or ".-" in value or "-." in value:
            raise ValueError("a bucket name has no two adjacent dots, nor a dot next to a hyphen")
        if re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", value):
            raise ValueError("a bucket name is not an IP address")
        if value.startswith(_RESERVED_BUCKET_PREFIXES) or value.endswith(_RESERVED_BUCKET_SUFFIXES):
            raise ValueError("a bucket name does not use S3's reserved prefixes (xn--, sthree-, amzn-s3-demo-) or "
                             "suffixes (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)")
        return value

    @field_validator("prefix")
    @classmethod
    def _normalised_prefix(cls, value: str) -> str:
        # Keys are PREFIX/NAME: a '..' or '.' segment, an empty one or a control character would make two
        # spellings of one place (or, through a service that normalises keys, a place outside the prefix).
        prefix = value.strip("/")
        if len(prefix.encode()) > MAX_S3_PREFIX_BYTES:
            raise ValueError(f"is over {MAX_S3_PREFIX_BYTES} bytes (S3 keys are at most 1024)")
        if any(not ch.isprintable() for ch in prefix) or "\\" in prefix:
            raise ValueError("must not hold control characters or '\\'")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError("must be written normalised: no '..', '.' or empty segments")
        return prefix

    @field_validator("endpoint")
    @classmethod
    def _bare_service(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # The client builds each request's URL from the endpoint: a path, query or user name in it would
        # change which bucket a request reaches or leak into every log line that shows the URL.
        if value is not None and (value.username or value.password or value.query or value.fragment
                                  or (value.path or "/") != "/"):
            raise ValueError("must be the service's origin only (https://HOST[:PORT]), without user, path or query")
        return value

    @model_validator(mode="after")
    def _addressing_fits(self) -> S3Store:
        if self.addressing == "virtual":
            host = self.endpoint.host if self.endpoint is not None else None
            if host is not None and (host == "localhost" or host.replace(".", "").isdigit() or ":" in host):
                raise ValueError("addressing: virtual needs a DNS name (BUCKET.HOST); use addressing: path for an IP "
                                 "address or localhost")
            if "." in self.bucket:
                # BUCKET.s3.REGION.amazonaws.com would not match the service's *.s3 certificate.
                raise ValueError("addressing: virtual cannot reach a bucket whose name has dots over TLS (its name "
                                 "breaks the service's wildcard certificate); use addressing: path")
        return self

    @property
    def endpoint_url(self) -> str:
        """The service's URL, without a trailing '/'."""
        if self.endpoint is not None:
            return str(self.endpoint).rstrip("/")
        return f"https://s3.{self.region}.amazonaws.com"

    def key_of(self, name: str) -> str:
        """The S3 key of an object named `name` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def short_place(self) -> str:
        return f"S3 bucket {self.bucket}" + (f" prefix {self.prefix}/" if self.prefix else "")

    @property
    def place(self) -> str:
        return f"{self.endpoint_url} {self.short_place}"


def _store_kind(value: Any) -> str:
    # `kind` defaults to azure_blob: every spec written before S3 stores still loads unchanged.
    if isinstance(value, dict):
        kind = value.get("kind", "azure_blob")
        return kind if isinstance(kind, str) else ""
    return str(getattr(value, "kind", ""))


#: A volume's or sink's store, one model per kind, told apart by `kind`.
Store = Annotated[Annotated[BlobStore, Tag("azure_blob")] | Annotated[S3Store, Tag("s3")],
                  Discriminator(_store_kind, custom_error_type="store_kind",
                                custom_error_message="kind must be azure_blob (the default) or s3")]


def _mode_problem(store: BlobStore | S3Store, mode: EncryptionMode) -> str | None:
    if mode in MODES_OF_STORE[store.kind]:
        return None
    offered = ", ".join(m.value for m in MODES_OF_STORE[store.kind])
    return (f"{mode.value} is not offered by a store of kind {store.kind} (it offers {offered}; CPK is Azure "
            "Blob's customer-provided key, SSE-C is S3's)")


class Encryption(_Model):
    mode: EncryptionMode = EncryptionMode.CSE
    key: KeyReference | None = None

    @model_validator(mode="after")
    def _key_matches_mode(self) -> Encryption:
        if self.mode in (EncryptionMode.CSE, EncryptionMode.CPK, EncryptionMode.SSE_C) and self.key is None:
            raise ValueError(f"mode {self.mode.value} needs a key reference (encryption.key)")
        if self.mode is EncryptionMode.SSE and self.key is not None:
            raise ValueError("mode SSE uses no key of ours: remove encryption.key or choose CSE")
        return self


class SinkEncryption(Encryption):
    """A telemetry or log sink's encryption: always CSE, so what the room exports leaves it only as ciphertext."""

    @field_validator("mode")
    @classmethod
    def _client_side(cls, mode: EncryptionMode) -> EncryptionMode:
        if mode is not EncryptionMode.CSE:
            raise ValueError(f"must be CSE, not {mode.value}: exported telemetry and logs leave the room only "
                             "as ciphertext")
        return mode


class Volume(_Model):
    name: Name
    owner: str | None = Field(None, description="the contract member who owns the data")
    store: Store
    # Required: the default mode, CSE, needs a key reference anyway.
    encryption: Encryption
    mount_path: str | None = Field(None, description="where the app sees it; default /mnt/remote/NAME")

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None:
            problem = _app_path_problem(value) or _system_path_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @property
    def path_in_app(self) -> str:
        return self.mount_path or f"/mnt/remote/{self.name}"


#: Where no volume may be mounted in the app, nor below: the image's programs and libraries (/bin, /lib*,
#: /sbin, /usr), its configuration and the files the runtime writes there (/etc: hosts, resolv.conf,
#: passwd), the kernel's and the runtime's interfaces (/dev, /proc, /sys, /run and /var/run), the boot and
#: root's home folders, and the app's private scratch space (/tmp, /var/tmp: a datasink there would export
#: what the app believes is temporary; a datasource there would take it away). A volume over any of them
#: replaces measured code or configuration with a party's data. "/" itself is refused by the same rule.
SYSTEM_PATHS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
                "/sbin", "/sys", "/tmp", "/usr", "/var/run", "/var/tmp")


def _app_path_problem(value: str) -> str | None:
    """A path in the app's filesystem: absolute and written normalised, so what the spec shows (and the
    CCE policy measures) is what the runtime mounts."""
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        return "must be an absolute path without '..'"
    if str(path) != value or "\x00" in value:
        return f"must be written normalised: {str(path)!r}"
    return None


def _system_path_problem(value: str) -> str | None:
    path = PurePosixPath(value)
    if path == PurePosixPath("/"):
        return "must not be / (a volume over the whole filesystem replaces the image)"
    for system in SYSTEM_PATHS:
        if path == PurePosixPath(system) or path.is_relative_to(system):
            return f"must not be {system} or below it: a system path of the app's image (spec.SYSTEM_PATHS)"
    return None


class Datasource(Volume):
    """Read-only clear-text view of a party's encrypted data."""

    # Optional so that specs written before manifests still load; `ccr spec explain` flags a datasource
    # without one (storage could then roll objects back or delete them unnoticed).
    manifest_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="sha256 of the dataset manifest `ccr data publish` wrote (names, sizes and digests of "
                          "every object): the room shows only those objects, refuses any other version of one "
                          "and does not start if one is missing")


class Datasink(Volume):
    """Write-only (sequential) output, encrypted before it leaves the room."""


class Resources(_Model):
    cpu: PositiveFloat = Field(description="cores")
    memory_gb: PositiveFloat


class AppMount(_Model):
    """An extra mount the app asks for. The container policy allows only a datasource (ro) or datasink (rw),
    named by `source`, at its own path: the cross-checks say so at load."""

    source: str
    target: str
    mode: Literal["ro", "rw"] = "ro"

    @field_validator("target")
    @classmethod
    def _normalised(cls, value: str) -> str:
        problem = _app_path_problem(value)
        if problem:
            raise ValueError(problem)
        return value


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
    # Left out of the canonical JSON when off, so specs that do not ask keep their HOST_DATA.
    loopback_tcp: bool = Field(
        False, exclude_if=lambda value: not value,
        description="the app may open TCP connections to its own listeners on 127.0.0.1, in the room's app "
                    "port range (firewall.model.APP_LOOPBACK_PORTS, also the room's ephemeral range, where no "
                    "sidecar listens): what a JVM and its Python driver need (Spark's py4j gateway, RPC and "
                    "block manager). Default: off")

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not PINNED_IMAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not pinned by digest: use REPO@sha256:<64 lower-case hex digits> (the "
                             "launcher's container policy, rule image_pinned; `ccr images build NAME --pin SPEC` "
                             "writes it)")
        return value

    @field_validator("user")
    @classmethod
    def _user_format(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(:\d+)?", value):
            raise ValueError("must be a numeric uid or uid:gid, e.g. 1000:1000")
        if any(int(part) > MAX_UID for part in value.split(":")):
            raise ValueError(f"a uid or gid is at most {MAX_UID}")
        uid, _, gid = value.partition(":")
        if int(uid) == 0:
            raise ValueError("the app must not run as uid 0 (the container policy's rule non_root_user; the "
                             "firewall cannot confine uid 0)")
        if gid and int(gid) == 0:
            raise ValueError("the app must not run with gid 0 (the container policy's rule non_root_group)")
        return value

    @field_validator("privileged")
    @classmethod
    def _not_privileged(cls, value: bool) -> bool:
        if value:
            raise ValueError("the app must not run privileged (the container policy's rule not_privileged)")
        return value

    @field_validator("capabilities")
    @classmethod
    def _no_capabilities(cls, value: list[str]) -> list[str]:
        if value:
            shown = ", ".join(cap if cap.isprintable() else repr(cap) for cap in value)
            raise ValueError(f"the app may not add {shown}: it runs with every capability dropped (the "
                             "container policy's rule no_added_capabilities)")
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

    @field_validator("policy")
    @classmethod
    def _beside_the_spec(cls, value: str | None) -> str | None:
        problem = contained_path_problem(value) if value is not None else None
        if problem:
            raise ValueError(f"{value!r} {problem}: a policy file is read only from the spec's own folder")
        return value

    @field_validator("policy_rego")
    @classmethod
    def _parses_in_opa(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:  # OPA (a Go library, ~10 ms and ~20 MB to load) only for specs that carry Rego
            try:
                check_policy(info.data.get("policy") or f"{info.data.get('name', 'endpoint')}.rego", value)
            except RegoPolicyError as exc:
                raise ValueError(exc.message) from None
        return value


class EgressRule(_Model):
    """One allowed destination. `http`/`https` go through the HTTP proxy (hostname checked, upstream TLS
    verified); `tcp` allows one IPv4 ip:port through the TCP proxy."""

    # Before `host`, whose rule depends on it (a field validator sees the fields declared before its own).
    protocol: Literal["http", "https", "tcp"] = "https"
    host: str
    port: int = Field(ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _host_for_protocol(cls, host: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        if "/" in host and _is_network(host):
            raise ValueError(f"{host!r} is a network: a rule allows one destination, never a range (0.0.0.0/0 "
                             "would allow everything)")
        if protocol == "tcp":
            _refuse_address(_require_ipv4(host), host)
        elif protocol is not None:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(f"an {protocol} rule needs a host name (letters, digits, '-', '_' and '.', at most "
                                 f"253 characters), not {host!r}")
            _refuse_host_name(host)
        return host

    @property
    def destination(self) -> tuple[str, str, int]:
        """What the proxy tells rules apart by: the HTTP proxy routes http and https by host name (case does
        not matter), the TCP proxy by address."""
        return ("tcp" if self.protocol == "tcp" else "http", self.host.lower(), self.port)


def _is_network(host: str) -> bool:
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        return False
    return True


def _require_ipv4(host: str) -> ipaddress.IPv4Address:
    """The firewall redirects, and the TCP proxy matches, the app's IPv4 destination address: nothing else."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"a tcp rule needs an IPv4 address, not {host!r} (the TCP proxy matches the destination "
                         "address; reach a host name with an http or https rule)") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"a tcp rule needs an IPv4 address, not {host!r}: the app has no IPv6 egress")
    return address


#: Addresses that are never a destination out of the room, each with why. The proxy connects as a sidecar
#: (uid 0, not confined by the firewall), so a rule to one of them would hand the app whatever listens
#: there: the room's own sidecars on loopback (skr, governance: reachable only through
#: `application.sidecar_apis`), the platform's metadata and wire servers (IMDS, its identity tokens).
_NEVER_EGRESS: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(network), why) for network, why in (
        ("127.0.0.0/8", "loopback, the room itself: its sidecars listen there (let the app call them with "
                        "application.sidecar_apis)"),
        ("0.0.0.0/8", "'this network' (0.0.0.0 is the room itself)"),
        ("169.254.0.0/16", "link-local: the platform's metadata service (169.254.169.254) and nothing else "
                           "the room needs"),
        ("168.63.129.16/32", "Azure's platform address (wire server, DNS, health probes), never a party's service"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (255.255.255.255 is broadcast)"),
    ))
#: Names that resolve to the room itself (RFC 6761 reserves localhost and *.localhost for loopback; the
#: others are Debian's /etc/hosts names for it).
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def _refuse_address(address: ipaddress.IPv4Address, host: str) -> None:
    for network, why in _NEVER_EGRESS:
        if address in network:
            raise ValueError(f"{host} is never an egress destination: {why}")


def _refuse_host_name(host: str) -> None:
    name = host.lower().removesuffix(".")
    if not name or "" in name.split("."):
        raise ValueError(f"{host!r} has an empty label: not a host name")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        raise ValueError(f"{host} is never an egress destination: the name means the room itself (loopback; let "
                         "the app call the sidecars with application.sidecar_apis)")
    try:
        address = ipaddress.IPv4Address(name)
    except ValueError:
        try:
            socket.inet_aton(name)
        except OSError:
            return
        # 127.1, 2130706433, 0x7f.0.0.1: the resolver reads these as addresses.
        raise ValueError(f"{host!r} is an IPv4 address in a short or numeric form: write it as a.b.c.d") from None
    _refuse_address(address, host)


class Egress(_Model):
    allow: list[EgressRule] = Field(default_factory=list)
    dns: Literal["tcp", "none"] = "none"

    @property
    def none(self) -> bool:
        return not self.allow


class Sink(_Model):
    """Where consented telemetry or logs are exported, encrypted like a datasink."""

    store: Store
    encryption: SinkEncryption  # required, as a volume's
    export_interval_s: PositiveFloat | None = Field(None, description="also export continuously")


class Telemetry(_Model):
    telemetry_sink: Sink | None = None
    log_sink: Sink | None = None


class Governance(_Model):
    endpoint: HttpsUrl = Field(description="the clean room governance service (CGS)")
    ca_bundle: str | None = Field(None, description="PEM file trusted for the endpoint's certificate")
    consent_poll_interval_s: PositiveFloat = 5.0


#: A spec's extra CA certificates: the private CAs of a few parties, not a copy of a system store.
MAX_CA_CERTIFICATES_BYTES = 64 * 1024
MAX_CA_CERTIFICATES = 16
DEFAULT_ENTRA_ENDPOINT = "https://login.microsoftonline.com"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n(.*?)-----END \1-----", re.DOTALL)


class TlsTrust(_Model):
    """Who the room trusts for TLS to the services outside it, beyond the system's CA store. Carried in the
    spec, so HOST_DATA measures it: an operator cannot slip a CA of their own into a running room."""

    ca_certificates: str = Field("", description="PEM CERTIFICATE blocks of the private CAs some party uses "
                                                 f"(at most {MAX_CA_CERTIFICATES}, {MAX_CA_CERTIFICATES_BYTES} bytes)")

    @field_validator("ca_certificates")
    @classmethod
    def _pem_certificates(cls, value: str) -> str:
        if not value.strip():
            return ""
        if len(value.encode()) > MAX_CA_CERTIFICATES_BYTES:
            raise ValueError(f"{len(value.encode())} bytes, over the {MAX_CA_CERTIFICATES_BYTES} allowed")
        blocks = list(_PEM_BLOCK.finditer(value))
        if _PEM_BLOCK.sub("", value).strip():
            raise ValueError("only PEM CERTIFICATE blocks (-----BEGIN CERTIFICATE-----) may be here")
        if len(blocks) > MAX_CA_CERTIFICATES:
            raise ValueError(f"{len(blocks)} certificates, over the {MAX_CA_CERTIFICATES} allowed")
        for number, block in enumerate(blocks, 1):
            if block.group(1) != "CERTIFICATE":
                raise ValueError(f"block {number} is a {block.group(1)!r}, not a CERTIFICATE (a private key or "
                                 "anything else has no place in a spec)")
            try:
                x509.load_pem_x509_certificate(block.group(0).encode())
            except ValueError:
                raise ValueError(f"certificate {number} does not parse as an X.509 certificate") from None
        return value

    def certificates_pem(self) -> str:
        """The certificates, one PEM block after the other ("" for none)."""
        return "".join(f"{m.group(0).strip()}\n" for m in _PEM_BLOCK.finditer(self.ca_certificates))


class Contract(_Model):
    id: Name
    members: list[str] = Field(default_factory=list)
    governance: Governance


class CleanRoomSpec(_Model):
    api_version: Literal["ccr/v1"] = Field("ccr/v1", alias="apiVersion")
    name: Name
    contract: Contract
    maa_endpoint: HttpsUrl = Field(description="the attestation service the room uses")
    entra_endpoint: HttpsUrl = Field(DEFAULT_ENTRA_ENDPOINT, validate_default=True,
                                     description="the Entra ID authority the room's identities federate with")
    trust: TlsTrust = Field(default_factory=TlsTrust)
    datasources: list[Datasource] = Field(default_factory=list)
    datasinks: list[Datasink] = Field(default_factory=list)
    application: Application
    endpoints: list[Endpoint] = Field(default_factory=list)
    egress: Egress = Field(default_factory=Egress)
    telemetry: Telemetry = Field(default_factory=Telemetry)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> CleanRoomSpec:
        # Each problem names its own field path (a model validator's error has none).
        volumes = self.volumes_with_location()
        problems = [
            *_repeats((where, "name", vol.name, repr(vol.name)) for where, vol in volumes),
            *(f"{where}.owner: {vol.owner!r} is not a contract member" for where, vol in volumes
              if self.contract.members and vol.owner and vol.owner not in self.contract.members),
            *_repeats((where, "mount_path", vol.path_in_app, vol.path_in_app) for where, vol in volumes),
            *_repeats((f"endpoints[{i}]", "name", e.name, repr(e.name)) for i, e in enumerate(self.endpoints)),
            *_repeats((f"endpoints[{i}]", "port", e.port, str(e.port)) for i, e in enumerate(self.endpoints)),
            # Envoy refuses two clusters (or virtual host domains) for one destination.
            *_repeats(((f"egress.allow[{i}]", "host", rule.destination, f"{rule.host}:{rule.port}")
                       for i, rule in enumerate(self.egress.allow)), clash="is already allowed by"),
        ]
        problems += self._app_mount_problems()
        problems += [f"{where}.encryption.mode: {problem}" for where, target in self.blob_targets_with_location()
                     if (problem := _mode_problem(target.store, target.encryption.mode))]
        if self.application.key_vaults and "skr" not in self.application.sidecar_apis:
            problems.append("application.key_vaults: the app can use them only with skr in application.sidecar_apis")
        if self.application.mode == "api" and not self.endpoints:
            problems.append("endpoints: an api application needs at least one endpoint")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _app_mount_problems(self) -> list[str]:
        """The container policy's mount rules (declared_mounts, mount_targets, mount_modes), at load."""
        declared = {vol.name: (vol.path_in_app, "ro" if where.startswith("datasources") else "rw")
                    for where, vol in self.volumes_with_location()}
        problems = []
        for i, mount in enumerate(self.application.mounts):
            where = f"application.mounts[{i}]"
            if mount.source not in declared:
                problems.append(f"{where}.source: {mount.source!r} is not a datasource or datasink of the spec (the "
                                "container policy's rule declared_mounts: the app mounts only the spec's volumes)")
                continue
            target, mode = declared[mount.source]
            if mount.target != target:
                problems.append(f"{where}.target: {mount.source} is mounted at {target}, not {mount.target} (the "
                                "container policy's rule mount_targets)")
            if mount.mode != mode:
                problems.append(f"{where}.mode: {mount.source} is mounted {mode}, not {mount.mode} (the container "
                                "policy's rule mount_modes)")
        return problems

    @model_validator(mode="after")
    def _fits_ccr_spec(self) -> CleanRoomSpec:
        """Every sidecar gets the resolved spec in one environment variable (CCR_SPEC): it must fit."""
        size = len(self.canonical_json())  # ASCII: json.dumps escapes everything else
        if size > MAX_SPEC_JSON_BYTES:
            largest = max(((len(e.policy_rego), i, e.name) for i, e in enumerate(self.endpoints) if e.policy_rego),
                          default=None)
            hint = (f"; the largest policy is endpoints[{largest[1]}] ({largest[2]}, {largest[0]} characters)"
                    if largest else "")
            raise ValueError(f"the resolved spec is {size} bytes of JSON, over the {MAX_SPEC_JSON_BYTES} a sidecar's "
                             f"CCR_SPEC environment variable can hold (Linux MAX_ARG_STRLEN){hint}")
        return self

    def canonical_json(self) -> str:
        """The resolved spec as canonical JSON (sorted keys, no whitespace): what every sidecar receives in
        `CCR_SPEC`, and so what the CCE policy (HOST_DATA) measures."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))

    def volumes_with_location(self) -> list[tuple[str, Volume]]:
        return ([(f"datasources[{i}]", v) for i, v in enumerate(self.datasources)]
                + [(f"datasinks[{i}]", v) for i, v in enumerate(self.datasinks)])

    def blob_targets(self) -> list[Volume | Sink]:
        """Everything the room reads or writes in storage (Azure Blob or S3), each with its store and
        encryption: the datasources, the datasinks and the telemetry/log sinks."""
        return [target for _, target in self.blob_targets_with_location()]

    def blob_targets_with_location(self) -> list[tuple[str, Volume | Sink]]:
        sinks = [(f"telemetry.{name}", sink) for name in ("telemetry_sink", "log_sink")
                 if (sink := getattr(self.telemetry, name)) is not None]
        return [*self.volumes_with_location(), *sinks]

    def volume(self, name: str) -> Volume:
        for _, vol in self.volumes_with_location():
            if vol.name == name:
                return vol
        raise KeyError(name)

    def store_credential_secrets(self) -> frozenset[str]:
        """The CGS secrets holding a store's credentials (S3 key pairs): for the room's sidecars only."""
        return frozenset(target.store.credentials.secret for target in self.blob_targets()
                         if isinstance(target.store, S3Store) and target.store.credentials.secret is not None)

    def federated_identities(self) -> dict[str, str]:
        """client id → tenant id of every federated identity the spec names (volumes and sinks)."""
        stores = [target.store for target in self.blob_targets()]
        return {s.identity.client_id: s.identity.tenant_id for s in stores if s.identity is not None}


def _repeats(entries: Iterable[tuple[str, str, Hashable, str]], *, clash: str = "is already used by") -> list[str]:
    """One problem per entry whose key an earlier entry has. An entry: (where, field, key, key as shown)."""
    first: dict[Hashable, str] = {}
    problems = []
    for where, field, key, shown in entries:
        if key in first:
            problems.append(f"{where}.{field}: {shown} {clash} {first[key]}")
        else:
            first[key] = where
    return problems


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
                            "(pass --endpoints FILE or --var NAME=VALUE)")
            return match.group(0)

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, variables, f"{path}.{_key(k)}" if path else _key(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _key(key: Any) -> str:
    """A mapping key as a field path shows it: a key that is not a plain word (a hostile spec's key may hold a
    line break, or not be a string) is quoted, so every problem stays one line."""
    text = str(key)
    return text if isinstance(key, str) and text.isprintable() and text.strip() == text and text else repr(key)


def _error_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for previous, part in zip((None, *loc), loc, strict=False):
        if previous == "store" and part in MODES_OF_STORE:
            continue  # the union's tag (the store's kind): the field path is store.FIELD
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{_key(part)}" if out else _key(part)
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
        data = load_json(read_bounded(Path(path)))
    except OSError as exc:
        raise SpecError([f"cannot read endpoints file: {exc.strerror}"], str(path)) from exc
    except UntrustedInputError as exc:
        raise SpecError([f"the endpoints file {exc}"], str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(["the endpoints file must be a JSON object of names and values"], str(path))
    return {k: str(v) for k, v in data.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}


def parse_spec(data: Any, *, source: str = "spec", variables: Mapping[str, str] | None = None,
               base_dir: Path | None = None) -> CleanRoomSpec:
    """Validate already-parsed YAML/JSON data; raises SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(["the top level must be a mapping of fields"], source)
    try:
        check_tree(data)  # before anything walks it: `_substitute` and pydantic recurse
    except UntrustedInputError as exc:
        raise SpecError([f"the spec {exc}"], source) from None
    problems: list[str] = []
    data = _substitute(data, variables or {}, "", problems)
    if problems:
        raise SpecError(problems, source)
    if base_dir is not None:
        problems = _inline_policy_files(data, base_dir)
    try:
        spec = CleanRoomSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems + describe_validation_error(exc), source) from None
    if problems:
        raise SpecError(problems, source)
    return spec


def _inline_policy_files(data: dict[str, Any], base_dir: Path) -> list[str]:
    """Each endpoint's `policy` file read into its `policy_rego` (in `data`, a copy `_substitute` made), before
    validation, so the Rego is checked like any field: from here on the spec carries the Rego itself. Returns
    the problems; a malformed endpoint is left to validation."""
    problems: list[str] = []
    endpoints = data.get("endpoints")
    for i, endpoint in enumerate(endpoints if isinstance(endpoints, list) else []):
        policy = endpoint.get("policy") if isinstance(endpoint, dict) else None
        if not policy or not isinstance(policy, str) or endpoint.get("policy_rego") is not None:
            continue
        if contained_path_problem(policy):
            continue  # the field's own rule reports it
        name = endpoint.get("name")
        try:
            endpoint["policy_rego"] = read_contained(base_dir, policy, MAX_POLICY_FILE_BYTES)
        except OSError as exc:
            problems.append(f"endpoints[{i}].policy: endpoint {name}: cannot read {policy} next to the spec: "
                            f"{exc.strerror}")
        except UntrustedInputError as exc:
            problems.append(f"endpoints[{i}].policy: endpoint {name}: {policy} {exc}")
    return problems


def load_spec(path: str | Path, *, variables: Mapping[str, str] | None = None) -> CleanRoomSpec:
    """Load and validate a spec file. Relative policy paths are resolved against its folder and the files'
    text inlined (`Endpoint.policy_rego`)."""
    path = Path(path)
    try:
        data = load_yaml(read_bounded(path))
    except OSError as exc:
        raise SpecError([f"cannot read: {exc.strerror}"], str(path)) from exc
    except UntrustedInputError as exc:
        raise SpecError([f"the spec {exc}"], str(path)) from None
    return parse_spec(data, source=str(path), variables=variables, base_dir=path.parent)


def read_spec_document(path: Path) -> tuple[str, Any]:
    """A spec file's text and its YAML tree (bounded as `load_spec` reads it, variables not substituted), for
    commands that edit one line of it."""
    try:
        text = read_bounded(path)
        return text, load_yaml(text)
    except OSError as exc:
        raise SpecError([f"cannot read: {exc.strerror}"], str(path)) from exc
    except UntrustedInputError as exc:
        raise SpecError([f"the spec {exc}"], str(path)) from None


def rewrite_spec_line(path: Path, text: str, line: re.Pattern[str], replace: Callable[[re.Match[str]], str],
                      what: str) -> None:
    """Write `text` back to the spec file with the one line `line` matches replaced, comments and layout kept
    (pinning an image or a manifest); a spec where the line is not exactly once is left alone."""
    new_text, count = line.subn(replace, text)
    if count != 1:
        raise SpecError([f"expected one line {what}, found {count}"], str(path))
    path.write_text(new_text)


def spec_directory(path: str | Path) -> Path:
    return Path(path).resolve().parent
