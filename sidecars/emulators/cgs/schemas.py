"""The request bodies of the CGS stand-in's routes, as JSON schemas for its OpenAPI document.

The routes read their bodies themselves, after the caller is authenticated (a member's signature covers the
body's bytes; a room's envelope is its credential), so FastAPI never sees these schemas at run time: they
describe the API to clients and to the fuzz tests, and each route checks what it reads.
"""

from __future__ import annotations

from typing import Any

from .store import ACTIONS, POLICY_CLAIMS

STRING: dict[str, Any] = {"type": "string"}


def body(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "") -> dict[str, Any]:
    """`openapi_extra` for a route reading a JSON object with these properties."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    request_body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        request_body["description"] = description
    return {"requestBody": request_body}


# Governance writes travel as COSE_Sign1 (`application/cose`) whose payload is the JSON described; the JSON
# body itself is taken only from a stand-in started with --allow-signed-header (the legacy member header).
GOV_WRITE = ("A COSE_Sign1 message (application/cose, ES384, kid = member id, ccf.gov.msg.type and "
             "ccf.gov.msg.created_at protected) whose payload is this JSON; plain JSON only with the legacy "
             "signed header on a stand-in started with --allow-signed-header.")


CONTRACT = body({"data": {}, "version": STRING}, ("data",))
# `labels` (string values): `kind: dataset|query` makes it an analytics document, whose data is that document's
# JSON text (see `analytics`).
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": STRING,
                          "properties": {"kind": {"enum": ["dataset", "query"]}}}
DOCUMENT = body({"contractId": STRING, "data": {}, "version": STRING, "labels": LABELS}, ("contractId", "data"))
PROPOSAL = body({"actions": {"type": "array", "items": {
    "type": "object", "required": ["name", "args"], "properties": {
        "name": {"enum": list(ACTIONS)},
        "args": {"type": "object", "properties": {
            "contractId": STRING, "documentId": STRING, "type": {"enum": ["add", "remove"]},
            "contract": {"type": "object", "properties": {"data": {}, "version": STRING}},
            "document": {"type": "object", "properties": {"contractId": STRING, "data": {}, "version": STRING,
                                                          "labels": LABELS}},
            "cert": {"type": "string", "description": "PEM certificate"}, "member_data": {"type": "object"},
            "kid": STRING, "issuer_url": STRING,
            "claims": {"type": "object", "properties": {claim: {} for claim in POLICY_CLAIMS}},
            "spec": {"type": "object", "properties": {"data": {"type": "object"}}}}}}}}}, ("actions",),
    GOV_WRITE)
BALLOT = body({"ballot": {"enum": ["export function vote (proposal, proposerId) { return true }",
                                   "export function vote (proposal, proposerId) { return false }"]}}, ("ballot",),
              GOV_WRITE)
SECRET = body({"value": STRING}, ("value",))
# A room's request: its attestation and the key answers are wrapped to; a write adds its signed data.
ROOM = body({
    "attestation": {"type": "object", "required": ["evidence", "endorsements"], "properties": {
        "evidence": STRING, "endorsements": STRING, "uvm_endorsements": STRING}},
    "platform": STRING, "encrypt": {"type": "object", "properties": {"publicKey": STRING}},
    "data": STRING, "timestamp": STRING,
    "sign": {"type": "object", "properties": {"signature": STRING, "publicKey": STRING}}}, ("attestation",))
