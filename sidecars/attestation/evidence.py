"""Evidence: what a room presents to be verified, and the wire shapes it travels in.

`Evidence` = the raw SNP report, the VCEK certificate chain (PEM: VCEK, ASK, ARK) and the UVM endorsement
(a COSE_Sign1 from the UVM's signer; empty when the platform has none). It converts to and from the shapes
the real services use:
- the C-ACI capture shape `{"report": {"snpCACI": {attestation, platformCertificates, uvmEndorsements}}}`
  (what azure-cleanroom's samples hold; all base64),
- the skr sidecar's `/attest/combined` shape `{evidence, endorsements, uvm_endorsements, endorsed_tcb}`
  (base64; `endorsements` is the PEM chain), which is also what CGS receives under `attestation`,
- the MAA `attest/SevSnpVm` request body (`report` = b64url JSON {SnpReport, VcekCertChain, Endorsements}).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.errors import BadRequest
from .report import SnpReport

RUNTIME_DATA_TYPES = ("JSON", "Binary")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_decode_any(text: str, what: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (the services mix all four)."""
    if not isinstance(text, str):
        raise BadRequest(f"{what}: expected a base64 string")
    cleaned = "".join(text.split())
    try:
        return base64.b64decode(cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what}: not valid base64") from None


@dataclass(frozen=True)
class Evidence:
    """An SNP report with the endorsements a verifier needs to check it."""

    report: bytes
    vcek_chain_pem: bytes
    uvm_endorsement: bytes = b""

    # -- C-ACI capture shape -----------------------------------------------------------------------
    @classmethod
    def from_caci(cls, obj: dict[str, Any]) -> Evidence:
        snp = _field(_field(obj, "report", dict), "snpCACI", dict, "report.")
        return cls(
            report=b64_decode_any(_field(snp, "attestation", str, "report.snpCACI."), "report.snpCACI.attestation"),
            vcek_chain_pem=b64_decode_any(_field(snp, "platformCertificates", str, "report.snpCACI."),
                                          "report.snpCACI.platformCertificates"),
            uvm_endorsement=b64_decode_any(snp.get("uvmEndorsements", ""), "report.snpCACI.uvmEndorsements"),
        )

    def to_caci(self) -> dict[str, Any]:
        return {"report": {"snpCACI": {
            "attestation": base64.b64encode(self.report).decode(),
            "platformCertificates": base64.b64encode(self.vcek_chain_pem).decode(),
            "uvmEndorsements": base64.b64encode(self.uvm_endorsement).decode(),
        }}}

    # -- skr /attest/combined and CGS shape --------------------------------------------------------
    @classmethod
    def from_combined(cls, obj: dict[str, Any]) -> Evidence:
        return cls(
            report=b64_decode_any(_field(obj, "evidence", str), "evidence"),
            vcek_chain_pem=b64_decode_any(_field(obj, "endorsements", str), "endorsements"),
            uvm_endorsement=b64_decode_any(obj.get("uvm_endorsements", ""), "uvm_endorsements"),
        )

    def to_combined(self) -> dict[str, str]:
        return {
            "evidence": base64.b64encode(self.report).decode(),
            "endorsements": base64.b64encode(self.vcek_chain_pem).decode(),
            "uvm_endorsements": base64.b64encode(self.uvm_endorsement).decode(),
            "endorsed_tcb": SnpReport.parse(self.report).reported_tcb.to_bytes()[::-1].hex(),
        }

    # -- MAA attest/SevSnpVm request ---------------------------------------------------------------
    def maa_report_field(self) -> str:
        """The request's `report`: b64url of JSON {SnpReport, VcekCertChain, Endorsements}."""
        inner: dict[str, Any] = {
            "SnpReport": b64url_encode(self.report),
            "VcekCertChain": base64.b64encode(self.vcek_chain_pem).decode(),
        }
        if self.uvm_endorsement:
            inner["Endorsements"] = b64url_encode(
                json.dumps({"Uvm": [b64url_encode(self.uvm_endorsement)]}).encode())
        return b64url_encode(json.dumps(inner).encode())

    @classmethod
    def from_maa_report_field(cls, report: str) -> Evidence:
        try:
            inner = json.loads(b64_decode_any(report, "report"))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            raise BadRequest("report: not base64url-encoded JSON") from None
        if not isinstance(inner, dict):
            raise BadRequest("report: expected a JSON object")
        uvm = b""
        if inner.get("Endorsements"):
            try:
                endorsements = json.loads(b64_decode_any(inner["Endorsements"], "report.Endorsements"))
            except (ValueError, RecursionError):
                raise BadRequest("report.Endorsements: not base64url-encoded JSON") from None
            uvm_list = endorsements.get("Uvm") if isinstance(endorsements, dict) else None
            if not isinstance(uvm_list, list) or not uvm_list:
                raise BadRequest("report.Endorsements.Uvm: expected a non-empty list")
            uvm = b64_decode_any(uvm_list[0], "report.Endorsements.Uvm[0]")
        return cls(
            report=b64_decode_any(_field(inner, "SnpReport", str, "report."), "report.SnpReport"),
            vcek_chain_pem=b64_decode_any(_field(inner, "VcekCertChain", str, "report."), "report.VcekCertChain"),
            uvm_endorsement=uvm,
        )


@dataclass(frozen=True)
class MaaRequest:
    """A parsed MAA `attest/SevSnpVm` body: the evidence plus the data the report is bound to."""

    evidence: Evidence
    runtime_data: bytes
    runtime_data_type: str = "JSON"
    init_time_data: bytes = b""
    init_time_data_type: str = "JSON"
    nonce: int | str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "report": self.evidence.maa_report_field(),
            "runtimeData": {"data": b64url_encode(self.runtime_data), "dataType": self.runtime_data_type},
            "initTimeData": {"data": b64url_encode(self.init_time_data),
                             "dataType": self.init_time_data_type if self.init_time_data else ""},
        }
        if self.nonce is not None:
            body["nonce"] = self.nonce
        return body

    @classmethod
    def from_body(cls, body: Any) -> MaaRequest:
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object")
        evidence = Evidence.from_maa_report_field(_field(body, "report", str))
        runtime = _field(body, "runtimeData", dict)
        runtime_type = runtime.get("dataType") or "Binary"
        if runtime_type not in RUNTIME_DATA_TYPES:
            raise BadRequest(f"runtimeData.dataType: expected one of {', '.join(RUNTIME_DATA_TYPES)}")
        init = body.get("initTimeData") or {}
        if not isinstance(init, dict):
            raise BadRequest("initTimeData: expected an object")
        init_data = b64_decode_any(init.get("data") or "", "initTimeData.data")
        init_type = init.get("dataType") or ("JSON" if init_data else "")
        if init_data and init_type not in RUNTIME_DATA_TYPES:
            raise BadRequest(f"initTimeData.dataType: expected one of {', '.join(RUNTIME_DATA_TYPES)}")
        return cls(
            evidence=evidence,
            runtime_data=b64_decode_any(_field(runtime, "data", str, "runtimeData."), "runtimeData.data"),
            runtime_data_type=runtime_type,
            init_time_data=init_data, init_time_data_type=init_type,
            nonce=body.get("nonce"),
        )


def load_evidence_document(obj: Any) -> tuple[Evidence, MaaRequest | None]:
    """Recognise any of the three shapes. Returns the evidence and, for an MAA body, the whole request."""
    if isinstance(obj, dict):
        if isinstance(obj.get("report"), dict):
            return Evidence.from_caci(obj), None
        if isinstance(obj.get("report"), str) and "runtimeData" in obj:
            request = MaaRequest.from_body(obj)
            return request.evidence, request
        if "evidence" in obj:
            return Evidence.from_combined(obj), None
    raise BadRequest("not a recognised evidence document: expected the C-ACI capture shape "
                     "({report: {snpCACI: ...}}), an MAA attest/SevSnpVm request body, or "
                     "the skr /attest/combined shape ({evidence, endorsements, uvm_endorsements})")


def load_evidence_file(path: str | Path) -> tuple[Evidence, MaaRequest | None]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadRequest(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"{path}: not a JSON document ({exc})") from None
    return load_evidence_document(obj)


def _field(obj: Any, name: str, kind: type, prefix: str = "") -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise BadRequest(f"{prefix}{name}: field required")
    value = obj[name]
    if not isinstance(value, kind):
        raise BadRequest(f"{prefix}{name}: expected {'an object' if kind is dict else 'a string'}")
    return value
