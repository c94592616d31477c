"""The analytics demo's storage variants: one story, three ways to store the same data, one answer.

- `analytics` (the default): every volume on Azure Blob, client-side encrypted (CSE): storage holds only
  ciphertext, each party's key released only to the attested room.
- `analytics-s3`: northwind's sales stay on Azure Blob (CSE); woodgrove's customers and its results live in
  an S3 bucket with the service's own encryption (SSE). Woodgrove's AWS access key pair is a CGS secret
  (`woodgrove-aws`), which the room reads only after attestation; it is never in the spec.
- `analytics-sse`: every volume on Azure Blob with the service's own encryption (SSE): no key of ours.

The spec and the dataset documents are derived from the CSE ones (spec.yaml, documents/) here, so the three
variants cannot drift apart: only where the data lives and how it is encrypted differ.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

VARIANTS = ("analytics", "analytics-s3", "analytics-sse")
#: volume → its S3 bucket in the analytics-s3 variant (the stand-in's region, path-style: one local host)
S3_VOLUMES = {"woodgrove-input": "woodgrove-input", "woodgrove-output": "woodgrove-output"}
#: the CGS secret woodgrove stores its access key pair in (`ccr governance secret set`); CGS names it
#: MEMBERID_NAME after the member who set it, and the spec names that id (`aws_secret_id`)
AWS_SECRET = "woodgrove-aws"


def aws_secret_id(member_id: str) -> str:
    return f"{member_id}_{AWS_SECRET}"


def stand_in_key_pair(owner: str) -> dict[str, str]:
    """An access key pair for the S3 stand-in, which accepts any (moto checks no signature): on AWS, the pair
    of an IAM user allowed only on the owner's buckets."""
    return {"access_key_id": f"{owner.upper()}DEMOKEY", "secret_access_key": f"{owner}-demo-secret"}


def _sse_volumes(variant: str, spec: dict[str, Any]) -> set[str]:
    names = [v["name"] for v in [*spec.get("datasources", []), *spec.get("datasinks", [])]]
    if variant == "analytics-sse":
        return set(names)
    if variant == "analytics-s3":
        return set(S3_VOLUMES)
    return set()


def variant_spec(spec: dict[str, Any], variant: str, *, woodgrove_member_id: str = "woodgrove",
                 name: str | None = None) -> dict[str, Any]:
    """The CSE spec (parsed YAML, variables unresolved) turned into `variant`'s, named `name` (default: the
    variant). analytics-s3 names woodgrove's CGS secret by its id, which woodgrove's member id begins. Each
    variant is its own contract, so the three can run against one governance service."""
    if variant not in VARIANTS:
        raise ValueError(f"no analytics variant {variant!r}: one of {', '.join(VARIANTS)}")
    out = copy.deepcopy(spec)
    if variant == "analytics" and name is None:
        return out
    out["name"] = name or variant
    out["contract"]["id"] = f"collab-{out['name']}"
    # A room of another name keeps its data apart too (its own containers and buckets, NAME-VOLUME).
    place = (lambda volume: f"{name}-{volume}") if name else (lambda volume: volume)
    sse = _sse_volumes(variant, out)
    for volume in [*out.get("datasources", []), *out.get("datasinks", [])]:
        if volume["name"] in sse:
            volume["encryption"] = {"mode": "SSE"}
        if variant == "analytics-s3" and volume["name"] in S3_VOLUMES:
            volume["store"] = {"kind": "s3", "endpoint": "${s3_endpoint}", "region": "${s3_region}",
                               "bucket": place(S3_VOLUMES[volume["name"]]), "addressing": "path",
                               "credentials": {"secret": aws_secret_id(woodgrove_member_id)}}
        else:
            volume["store"]["container"] = place(volume["store"]["container"])
        key = volume["encryption"].get("key")
        if key and name:  # and its own keys: a KEK is released only to the HOST_DATA it was created for
            volume["encryption"]["key"] = {**key, "kek_name": place(key["kek_name"]),
                                           "dek_secret_name": place(key["dek_secret_name"])}
    return out


def variant_document(document: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A dataset document made to match `spec` (a variant's): its container (or bucket) and encryption."""
    out = copy.deepcopy(document)
    volume = next(v for v in spec.get("datasources", []) if v["name"] == document["store"])
    store = volume["store"]
    out["container"] = store["bucket"] if store.get("kind") == "s3" else store["container"]
    if volume["encryption"]["mode"] == "SSE":
        out["encryption"] = {"mode": "SSE"}
    return out


def sse_volumes(spec: dict[str, Any]) -> set[str]:
    """The volumes of `spec` that use no key of ours (nothing to wrap, release or publish a key for)."""
    return {v["name"] for v in [*spec.get("datasources", []), *spec.get("datasinks", [])]
            if v.get("encryption", {}).get("mode") == "SSE"}


def write_documents(documents: Path, spec: dict[str, Any], out: Path, *, prefix: str = "") -> Path:
    """`documents/` as `spec`'s variant needs them, written to `out` (the queries are the same), the datasets
    named PREFIXNAME (CGS document ids are global: rooms sharing one governance service need their own)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(documents.glob("*.json")):
        doc = json.loads(path.read_text())
        if path.name.endswith(".dataset.json"):
            doc = {**variant_document(doc, spec), "name": prefix + doc["name"]}
        else:
            doc["inputDatasets"] = [{**d, "datasetName": prefix + d["datasetName"]} for d in doc["inputDatasets"]]
        (out / path.name).write_text(json.dumps(doc, indent=2) + "\n")
    return out
