"""Import an Azure clean room contract (`CleanRoomSpecification`, azure-cleanroom's
`src/cleanroomspec/cleanroomspec-openapi.yaml`) as a ccr spec, so an existing contract runs with `ccr room up`.

Every field of the Azure document is either carried over or named in `Import.not_carried`, with the
reason; nothing is dropped silently. What the Azure format does not hold (the spec name, the contract id
when no governance URL names it, the attestation service when no KEK configuration names it) comes from
the caller's options.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..common.errors import SpecError
from ..common.untrusted import UntrustedInputError, load_json, load_yaml, read_bounded
from ..spec import CleanRoomSpec, EncryptionMode, parse_spec
from .azure_s3 import S3_STORE_TYPE, s3_store

NAME = re.compile(r"[^a-z0-9-]+")


@dataclass
class Import:
    spec: dict[str, Any]
    not_carried: list[str] = field(default_factory=list)
    policy_files: dict[str, str] = field(default_factory=dict)

    def yaml(self) -> str:
        header = ["# Imported from an Azure clean room specification by `ccr spec import-azure`."]
        if self.not_carried:
            header.append("# Not carried over (review before use):")
            header += [f"#   {line}" for line in self.not_carried]
        return "\n".join(header) + "\n" + yaml.safe_dump(self.spec, sort_keys=False)


def _name(value: str) -> str:
    cleaned = NAME.sub("-", value.lower()).strip("-")
    return cleaned[:63].rstrip("-") or "imported"


def _configuration(raw: Any) -> dict[str, Any]:
    """Azure keeps per-object settings in a `configuration` string: JSON, sometimes base64-encoded."""
    if not raw or not isinstance(raw, str):
        return {}
    for text in (raw, _b64(raw)):
        if text:
            try:
                value = load_json(text)
            except UntrustedInputError:
                continue
            if isinstance(value, dict):
                return {str(k).lower(): v for k, v in value.items()}
    return {}


def _b64(raw: str) -> str | None:
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


class _Importer:
    def __init__(self, doc: dict[str, Any], *, name: str | None, contract_id: str | None,
                 maa_endpoint: str | None, governance_endpoint: str | None):
        self.doc = doc
        self.out = Import(spec={})
        self.name = name
        self.contract_id = contract_id
        self.maa_endpoint = maa_endpoint
        self.governance_endpoint = governance_endpoint
        self.found_maa: str | None = None  # the first attestation service a KEK configuration names
        self.identities: dict[str, dict[str, Any]] = {}

    def skip(self, path: str, reason: str) -> None:
        self.out.not_carried.append(f"{path}: {reason}")

    def unknown_keys(self, obj: dict[str, Any], path: str, known: set[str]) -> None:
        for key in obj:
            if key not in known:
                self.skip(f"{path}.{key}" if path else key, "not part of the CleanRoomSpecification format")

    def run(self) -> Import:
        doc = self.doc
        self.unknown_keys(doc, "", {"sandbox", "identities", "datasources", "datasinks", "applications",
                                    "network", "governance"})
        sandbox = doc.get("sandbox") or {}
        if sandbox.get("sandboxType") not in (None, "Type_0"):
            self.skip("sandbox.sandboxType", f"{sandbox['sandboxType']!r}: ccr rooms always run the app sandboxed "
                                             "(non-root, no capabilities, policy-checked)")
        for key in ("privacyPolicy", "configuration"):
            if sandbox.get(key):
                self.skip(f"sandbox.{key}", "no sandbox policy in ccr: the container policy is generated from the spec")
        self.identities = {i.get("name"): i for i in doc.get("identities") or []}

        apps = doc.get("applications") or []
        if not apps:
            raise SpecError(["applications: the contract has no application"], "azure spec")
        for i in range(1, len(apps)):
            self.skip(f"applications[{i}]", f"ccr runs one application per room ({apps[i].get('name')!r} not imported)")
        app = apps[0]
        mounts = {**(app.get("datasources") or {}), **(app.get("datasinks") or {})}

        governance = self.governance(doc.get("governance") or {})
        spec: dict[str, Any] = {
            "apiVersion": "ccr/v1",
            "name": self.name or _name(app.get("name", "imported")),
            "contract": {"id": self.contract_id or governance.get("contract_id") or _name(app.get("name", "imported")),
                         "members": [],
                         "governance": {"endpoint": self.governance_endpoint or governance.get("endpoint")
                                        or "${cgs_endpoint}"}},
            "maa_endpoint": None,
        }
        spec["datasources"] = [self.volume(ap, f"datasources[{i}]", mounts, read_only=True)
                               for i, ap in enumerate(doc.get("datasources") or [])]
        spec["datasinks"] = [self.volume(ap, f"datasinks[{i}]", mounts, read_only=False)
                             for i, ap in enumerate(doc.get("datasinks") or [])]
        spec["maa_endpoint"] = self.maa_endpoint or self.found_maa or "${maa_endpoint}"
        # A KEK whose configuration names no attestation service trusts the room's.
        for volume in [*spec["datasources"], *spec["datasinks"], *(governance.get("telemetry") or {}).values()]:
            key = volume["encryption"].get("key")
            if key and key["maa_endpoint"] == "${maa_endpoint}":
                key["maa_endpoint"] = spec["maa_endpoint"]
        spec["application"], endpoints = self.application(app)
        network = self.network(doc.get("network") or {}, endpoints)
        spec["endpoints"] = endpoints
        spec["egress"] = network
        if governance.get("telemetry"):
            spec["telemetry"] = governance["telemetry"]
        self.out.spec = spec
        return self.out

    def identity(self, ref: Any, path: str) -> dict[str, str] | None:
        identity = ref if isinstance(ref, dict) else None
        if identity is None:
            return None
        known = self.identities.get(identity.get("name"), identity)
        issuer = (known.get("tokenIssuer") or {})
        issuer_type = issuer.get("issuerType") or ""
        if issuer_type and issuer_type not in ("AttestationBasedTokenIssuer", "FederatedIdentityBasedTokenIssuer"):
            self.skip(f"{path}.tokenIssuer", f"{issuer_type}: ccr federates identities through the governance "
                                             "service's OIDC issuer; secret-based issuers are not used")
        out = {"client_id": known.get("clientId", "")}
        if known.get("tenantId"):
            out["tenant_id"] = known["tenantId"]
        return out

    def volume(self, ap: dict[str, Any], path: str, mounts: dict[str, str], *, read_only: bool) -> dict[str, Any]:
        self.unknown_keys(ap, path, {"name", "type", "path", "store", "identity", "protection"})
        expected = "Volume_ReadOnly" if read_only else "Volume_ReadWrite"
        if ap.get("type") and ap["type"] != expected:
            self.skip(f"{path}.type", f"{ap['type']!r}: a {'datasource' if read_only else 'datasink'} is always "
                                      f"{expected} in ccr")
        store = ap.get("store") or {}
        provider = store.get("provider") or {}
        volume: dict[str, Any] = {"name": _name(ap.get("name", ""))}
        if store.get("type") == S3_STORE_TYPE:
            # The bucket is reached with the credentials the configuration names; an identity, if any, is the
            # one the room uses for the owner's vault (the volume's keys), as for a Blob store.
            volume["store"] = s3_store(store, _configuration(provider.get("configuration")), f"{path}.store")
        elif store.get("type") in (None, "Azure_BlobStorage"):
            volume["store"] = {"account_url": (provider.get("url") or "").rstrip("/"),
                               "container": store.get("name", "")}
        else:
            raise SpecError([f"{path}.store.type: {store['type']!r} is not supported "
                             f"(only Azure_BlobStorage and {S3_STORE_TYPE})"], "azure spec")
        identity = self.identity(ap.get("identity"), f"{path}.identity")
        if identity:
            volume["store"]["identity"] = identity
        mount = mounts.get(ap.get("name")) or ap.get("path")
        if mount:
            volume["mount_path"] = mount if mount.startswith("/") else f"/mnt/remote/{mount}"
        volume["encryption"] = self.encryption(ap.get("protection") or {}, f"{path}.protection")
        return volume

    def encryption(self, protection: dict[str, Any], path: str) -> dict[str, Any]:
        self.unknown_keys(protection, path, {"proxyType", "proxyMode", "privacyPolicy", "configuration",
                                             "encryptionSecrets", "encryptionSecretAccessIdentity"})
        config = _configuration(protection.get("configuration"))
        default = EncryptionMode.CSE if protection.get("encryptionSecrets") else EncryptionMode.SSE
        text = str(config.get("encryptionmode") or default).upper()
        if protection.get("proxyMode") == "Open":
            self.skip(f"{path}.proxyMode", "'Open': ccr volumes are always mediated by the volumes sidecar")
        if protection.get("privacyPolicy"):
            self.skip(f"{path}.privacyPolicy", "per-volume privacy policies are not supported")
        try:
            mode = EncryptionMode(text)
        except ValueError:
            modes = ", ".join(m.value for m in EncryptionMode)
            raise SpecError([f"{path}.configuration: encryption mode {text!r} is not one of {modes}"],
                            "azure spec") from None
        if mode is EncryptionMode.SSE:
            return {"mode": mode.value}
        secrets = protection.get("encryptionSecrets") or {}
        kek, dek = secrets.get("kek") or {}, secrets.get("dek") or {}
        kek_resource = (kek.get("secret") or {}).get("backingResource") or {}
        dek_resource = (dek.get("secret") or {}).get("backingResource") or {}
        kek_provider, dek_provider = kek_resource.get("provider") or {}, dek_resource.get("provider") or {}
        kek_config = _configuration(kek_provider.get("configuration"))
        maa = kek_config.get("authority") or kek_config.get("maa_endpoint") or self.maa_endpoint
        if maa:
            self.found_maa = self.found_maa or maa
        key: dict[str, Any] = {
            "vault_url": (kek_provider.get("url") or "").rstrip("/"),
            "kek_name": _name(kek_resource.get("name") or kek.get("name") or ""),
            "dek_secret_name": _name(dek_resource.get("name") or dek.get("name") or ""),
            "maa_endpoint": maa or "${maa_endpoint}",
        }
        dek_url = (dek_provider.get("url") or "").rstrip("/")
        if dek_url and dek_url != key["vault_url"]:
            key["secret_vault_url"] = dek_url
        if protection.get("encryptionSecretAccessIdentity"):
            self.skip(f"{path}.encryptionSecretAccessIdentity", "keys are released by SKR to the attested room; "
                                                                "no identity is used to read them")
        return {"mode": mode.value, "key": key}

    def application(self, app: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        path = "applications[0]"
        self.unknown_keys(app, path, {"name", "image", "startType", "command", "environmentVariables",
                                      "datasources", "datasinks", "runtimeSettings"})
        image = app.get("image") or {}
        executable = (image.get("executable") or {}).get("backingResource") or {}
        reference = executable.get("id") or executable.get("name") or ""
        if "@sha256:" not in reference:
            self.skip(f"{path}.image.executable.backingResource.id",
                      f"{reference!r} is not pinned by digest: pin it (REPO@sha256:...) or the container "
                      "policy refuses it")
        for key in ("enforcementPolicy", "protection"):
            if image.get(key):
                self.skip(f"{path}.image.{key}", "the container policy is generated from the spec")
        runtime = app.get("runtimeSettings") or {}
        requests = ((runtime.get("resource") or {}).get("requests")) or {}
        if runtime.get("mounts"):
            self.skip(f"{path}.runtimeSettings.mounts", "mounts come from the datasources/datasinks")
        ports = [int(p) for p in runtime.get("ports") or []]
        application = {
            "name": _name(app.get("name", "app")),
            "image": reference,
            "command": list(app.get("command") or []),
            "env": {str(k): str(v) for k, v in (app.get("environmentVariables") or {}).items()},
            "mode": "api" if ports else "job",
            "start": "manual" if app.get("startType") == "Manual" else "auto",
            "resources": {"cpu": float(requests.get("cpu", 0.5)), "memory_gb": float(requests.get("memoryInGB", 0.5))},
        }
        endpoints = [{"name": f"port-{p}", "port": p} for p in ports]
        return application, endpoints

    def network(self, network: dict[str, Any], endpoints: list[dict[str, Any]]) -> dict[str, Any]:
        self.unknown_keys(network, "network", {"http", "tcp", "dns"})
        http = network.get("http") or {}
        inbound = http.get("inbound") or {}
        if inbound.get("enabled"):
            document = (((inbound.get("policy") or {}).get("privacyPolicy") or {}).get("policy") or {})
            if document.get("policyDocument"):
                for endpoint in endpoints:
                    file = f"{endpoint['name']}.rego"
                    self.out.policy_files[file] = document["policyDocument"]
                    endpoint["policy"] = file
            elif document:
                self.skip("network.http.inbound.policy", "external policy documents are not fetched: "
                                                         "put the Rego next to the spec and set endpoints[].policy")
        outbound = http.get("outbound") or {}
        if outbound.get("enabled"):
            self.skip("network.http.outbound", "policy-based HTTP egress has no ccr equivalent: list allowed "
                                               "hosts in egress.allow")
        egress: dict[str, Any] = {"allow": []}
        tcp = (network.get("tcp") or {}).get("outbound") or {}
        if tcp.get("enabled"):
            egress["allow"] = [{"host": e["address"], "port": int(e["port"]), "protocol": "tcp"}
                               for e in tcp.get("allowedIPs") or []]
        dns = network.get("dns") or {}
        if dns.get("enabled"):
            egress["dns"] = "tcp"
            if int(dns.get("port", 53)) != 53:
                self.skip("network.dns.port", f"{dns['port']}: ccr resolves through port 53 over TCP")
        return egress

    def governance(self, gov: dict[str, Any]) -> dict[str, Any]:
        self.unknown_keys(gov, "governance", {"consent", "audit", "telemetry"})
        found: dict[str, Any] = {}
        # `method`/`validResponses` describe the CGS API, which the governance sidecar speaks itself.
        for kind in ("consent", "audit"):
            for service in gov.get(kind) or []:
                match = re.match(r"(https?://[^/]+)(?:/.*?/contracts/([^/?]+))?", service.get("url", ""))
                if match:
                    found.setdefault("endpoint", match.group(1))
                    if match.group(2):
                        found.setdefault("contract_id", _name(match.group(2)))
        telemetry = gov.get("telemetry") or {}
        out: dict[str, Any] = {}
        logs = (telemetry.get("application") or {}).get("logs")
        if logs and (sink := self.sink(logs, "governance.telemetry.application.logs")):
            out["log_sink"] = sink
        infrastructure = telemetry.get("infrastructure") or {}
        chosen = None
        for kind in ("traces", "metrics", "logs"):
            path = f"governance.telemetry.infrastructure.{kind}"
            if not infrastructure.get(kind):
                continue
            if chosen:
                self.skip(path, f"ccr exports all infrastructure telemetry to one sink ({chosen}'s)")
            elif sink := self.sink(infrastructure[kind], path):
                out["telemetry_sink"] = sink
                chosen = kind
        if out:
            found["telemetry"] = out
        return found

    def sink(self, ap: dict[str, Any], path: str) -> dict[str, Any] | None:
        """The sink, or None (named as not carried over) unless it is CSE: the spec's rule for sinks."""
        volume = self.volume(ap, path, {}, read_only=False)
        mode = EncryptionMode(volume["encryption"]["mode"])
        if mode is not EncryptionMode.CSE:
            self.skip(f"{path}.protection", f"encryption mode {mode.value}: ccr exports telemetry and logs only "
                                            "client-side encrypted (CSE), with a key of the sink's owner")
            return None
        return {"store": volume["store"], "encryption": volume["encryption"]}


def import_azure_spec(path: str | Path, *, name: str | None = None, contract_id: str | None = None,
                      maa_endpoint: str | None = None, governance_endpoint: str | None = None) -> Import:
    try:
        doc = load_yaml(read_bounded(Path(path)))
    except OSError as exc:
        raise SpecError([f"cannot read: {exc.strerror}"], str(path)) from None
    except UntrustedInputError as exc:
        raise SpecError([f"the Azure spec {exc}"], str(path)) from None
    if isinstance(doc, dict) and "specification" in doc and len(doc) == 1:
        doc = doc["specification"]
    if not isinstance(doc, dict):
        raise SpecError(["the top level must be a CleanRoomSpecification mapping"], str(path))
    result = _Importer(doc, name=name, contract_id=contract_id, maa_endpoint=maa_endpoint,
                       governance_endpoint=governance_endpoint).run()
    return result


#: Stand-ins for the endpoints an imported spec leaves as variables, used only to validate it.
PLACEHOLDERS = {"cgs_endpoint": "https://cgs.invalid", "maa_endpoint": "https://maa.invalid"}


def validate_import(result: Import, variables: dict[str, str] | None = None) -> CleanRoomSpec:
    """Check the imported spec loads (placeholder endpoints stand in for unresolved variables)."""
    return parse_spec(result.spec, source="imported spec", variables={**PLACEHOLDERS, **(variables or {})})
