"""Schemathesis against the workspace's own OpenAPI (`/api/openapi.json`), served by a real `ccr workspace`
over the CGS stand-in, with the project's fuzz rules (tests/integration/fuzz): requests that fit each
operation's schema and requests that do not, hostile `Authorization` and `Content-Type` headers; no answer
is a 5xx (but 502/503 in the workspace's error shape, for a service behind it that is down or missing),
and every answer matches the schema (every 4xx in the shape `{"errors": [{"field", "message"}]}`).

The workspace has no login of its own (it is the party's, on loopback): what guards it is that a browser
page of another site cannot act for the party, and that a rebound DNS name cannot reach it. Both are
attacked on every operation the OpenAPI lists."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis

from tests.integration.fuzz.services import Service
from tests.integration.fuzz.test_fuzz_apis import fuzz_operation, openapi_under_test
from tests.integration.governance.conftest import ROOM_HOST_DATA, Cgs, register_consortium, start_cgs, unique
from tests.workspacepages.pages import Workspace, start_workspace

pytestmark = pytest.mark.slow

EXAMPLE = "examples/analytics/documents"
WORKSPACE_ERROR = {"type": "object", "required": ["errors"], "properties": {"errors": {
    "type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["field", "message"],
        "properties": {"field": {"type": ["string", "null"]}, "message": {"type": "string", "minLength": 1,
                                                                          "pattern": "^[^\\n]*$"}}}}}}
#: 502: CGS or the room failed or is down; 503: no Chromium to print the PDF with
UPSTREAM_STATUSES = frozenset({502, 503})
EVIL_ORIGIN = "https://evil.example"
UNSAFE = ("post", "put", "patch", "delete")


class Served:
    """The OpenAPI document the running workspace serves, where the fuzz helpers read an app's."""

    def __init__(self, document: dict[str, Any]):
        self.document = document

    def openapi(self) -> dict[str, Any]:
        return self.document


@pytest.fixture(scope="module")
def cgs(tmp_path_factory, server_tls, platform_dir) -> Iterator[Cgs]:
    """A CGS of this module's own: member names are unique in a CGS, and the page tests' story (same session)
    registers the same two parties."""
    service = start_cgs(tmp_path_factory.mktemp("wsat-fuzz-cgs"), server_tls, platform_dir)
    yield service
    service.proc.stop()


@pytest.fixture(scope="module")
def workspace(cgs, local_ca, tmp_path_factory, repo) -> Iterator[tuple[Workspace, str]]:
    members = register_consortium(cgs, local_ca, tmp_path_factory.mktemp("wsat-fuzz-members"),
                                  ("northwind", "woodgrove"))
    contract = unique("wsat-fuzz")
    members["northwind"].put_contract(contract, {"purpose": "fuzzing the workspace"})
    members.accept(members["northwind"].propose_contract(contract))
    members.accept(members["northwind"].propose_policy(contract, {
        "x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()], "x-ms-sevsnpvm-is-debuggable": False}))
    started = start_workspace("northwind-fuzz", tmp_path_factory.mktemp("wsat-fuzz"), "--identity",
                              str(members["northwind"].identity.directory), "--cgs", cgs.url,
                              "--ca-bundle", str(local_ca.cert_file))
    try:
        document = json.loads((repo / EXAMPLE / "northwind-sales.dataset.json").read_text())
        answer = started.api("POST", f"/collaborations/{contract}/datasets", {"document": document, "vote": True})
        assert answer.status_code == 201, answer.text
        yield started, contract
    finally:
        started.stop()


def openapi(workspace: Workspace) -> dict[str, Any]:
    return httpx.get(f"{workspace.url}/api/openapi.json", timeout=30).json()


def test_schemathesis_finds_no_5xx_and_every_answer_matches_the_schema(workspace):
    served, contract = workspace
    service = Service("workspace", Served(openapi(served)), None, WORKSPACE_ERROR, UPSTREAM_STATUSES,
                      path_values={"collaboration_id": (contract,), "dataset_id": ("northwind-sales",),
                                   "query_id": ("segment-mix",), "run": ("wsat-run-1",)})
    schema = schemathesis.openapi.from_dict(openapi_under_test(service))
    schema.config.update(base_url=served.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [o.label for o in operations]
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            failures += fuzz_operation(service, session, operation, statuses, anonymous=False)
    elapsed = time.monotonic() - started
    print(f"workspace: {sum(statuses.values())} requests to {len(operations)} operations in {elapsed:.1f} s; "
          f"answers {dict(sorted(statuses.items()))}")
    assert not failures, f"workspace ({len(failures)} of {len(operations)} operations):\n\n" + "\n\n".join(failures)
    assert any(200 <= status < 300 for status in statuses), statuses  # the requests were served, not only refused


def concrete(path: str, contract: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: contract if m.group(0) == "{collaboration_id}" else "wsat-x", path)


def test_another_sites_page_cannot_act_for_the_party_on_any_operation(workspace):
    served, contract = workspace
    unsafe = [(method, path) for path, item in openapi(served)["paths"].items() for method in item
              if method in UNSAFE]
    assert len(unsafe) >= 8, unsafe
    for method, path in unsafe:
        answer = httpx.request(method.upper(), served.url + concrete(path, contract), json={},
                               headers={"origin": EVIL_ORIGIN}, timeout=30)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
        assert "may not act for this party" in answer.json()["errors"][0]["message"]
    # nothing it sent took effect: northwind's own dataset is still accepted with consent on
    dataset = served.api("GET", f"/collaborations/{contract}/datasets").json()["value"]
    assert [d["consent"]["status"] for d in dataset if d["id"] == "northwind-sales"] == ["enabled"]


def test_a_rebound_dns_name_reaches_no_operation(workspace):
    served, contract = workspace
    for path, item in openapi(served)["paths"].items():
        for method in item:
            answer = httpx.request(method.upper(), served.url + concrete(path, contract), json={},
                                   headers={"host": "attacker.example:8765"}, timeout=30)
            assert answer.status_code == 421, (method, path, answer.status_code, answer.text)
