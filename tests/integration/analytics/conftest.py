"""The analytics app under test: a real Engine (ONE warm Spark session for the whole test session), a fake
governance sidecar on loopback answering the design's routes (members, documents with labels and final
votes, per-document consent, audit events), and members' identities that sign requests."""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from sidecars.analytics.roomgov import AnalyticsGovernance
from sidecars.analytics.service import Analytics, ServiceConfig, build_app
from sidecars.common.http import serve
from sidecars.common.memberauth import MemberIdentity

NW_DATASET = "nw-sales"
WG_DATASET = "wg-stores"
SINK = "wg-results"
JOIN_SQL = ("SELECT nw.region, COUNT(*) AS n, SUM(nw.amount) AS total FROM nw JOIN wg ON nw.region = wg.region "
            "GROUP BY nw.region")


def dataset_doc(name: str, owner: str, store: str, schema: list[tuple[str, str]], allowed: list[str],
                **extra: Any) -> dict:
    return {"name": name, "owner": owner, "store": store, "container": "data", "format": "csv",
            "schema": [{"name": n, "type": t} for n, t in schema], "allowedFields": allowed,
            "accessMode": "row", "aggregationThreshold": 2,
            "encryption": {"mode": "CSE", "dekSecret": f"{name}-dek", "kekName": f"{name}-kek"}, **extra}


def query_doc(sql: str = JOIN_SQL,
              inputs: tuple[tuple[str, str], ...] = ((NW_DATASET, "nw"), (WG_DATASET, "wg"))) -> dict:
    return {"segments": [{"executionSequence": 1, "sql": sql, "preConditions": [], "postFilters": []}],
            "inputDatasets": [{"datasetName": d, "viewName": v} for d, v in inputs],
            "outputDataset": {"datasinkName": SINK}}


@dataclass
class FakeGovernance:
    """The governance sidecar as the app sees it. Tests edit `documents`, `disabled` and read `events`."""

    members: list[dict] = field(default_factory=list)
    documents: dict[str, dict] = field(default_factory=dict)
    #: document id → reason message (consent disabled)
    disabled: dict[str, str] = field(default_factory=dict)
    contract_disabled: bool = False
    events: list[dict] = field(default_factory=list)
    #: document id → disable it after this many consent checks of it (a revocation while a run runs)
    disable_after: dict[str, int] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    #: audit writes answered 503 (not acknowledged)
    audit_down: bool = False
    #: document id → consent checks of it answered 503 after this many (governance unreachable mid-run)
    consent_down_after: dict[str, int] = field(default_factory=dict)
    members_calls: int = 0
    url: str = ""
    #: privacy budget spends asked for ({runId, queryId}); `spend_answer` (status, body) replaces CGS's ack
    spends: list[dict] = field(default_factory=list)
    spend_answer: tuple[int, Any] | None = None

    def publish(self, document_id: str, kind: str, document: dict, votes: dict[str, bool], state: str = "Accepted"):
        self.documents[document_id] = {
            "id": document_id, "contractId": "c1", "data": json.dumps(document), "state": state,
            "labels": {"kind": kind}, "finalVotes": [{"memberId": m, "vote": v} for m, v in votes.items()]}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/members")
        def members():
            self.members_calls += 1
            return {"value": self.members}

        @app.post("/memberdocuments/{document_id}")
        def document(document_id: str):
            if document_id not in self.documents:
                return JSONResponse({"error": {"code": "DocumentNotFound", "message": "not found"}}, 404)
            return self.documents[document_id]

        @app.post("/memberdocuments/{document_id}/consentcheck/execution")
        def document_consent(document_id: str):
            self.checks[document_id] = self.checks.get(document_id, 0) + 1
            if self.checks[document_id] > self.consent_down_after.get(document_id, 1 << 30):
                return JSONResponse({"error": {"code": "ServiceUnavailable", "message": "CGS unreachable"}}, 503)
            if document_id in self.disable_after and self.checks[document_id] > self.disable_after[document_id]:
                self.disabled.setdefault(document_id, "revoked by northwind")
            if document_id in self.disabled:
                return {"status": "disabled",
                        "reason": {"code": "ConsentRevoked", "message": self.disabled[document_id]}}
            return {"status": "enabled", "reason": {"code": "", "message": ""}}

        @app.post("/consentcheck/execution")
        def contract_consent():
            if self.contract_disabled:
                return {"status": "disabled", "reason": {"code": "ConsentRevoked", "message": "contract revoked"}}
            return {"status": "enabled"}

        @app.post("/privacybudget/spend")
        async def spend(request: Request):
            body = json.loads(await request.body())
            self.spends.append(body)
            if self.spend_answer is not None:
                return JSONResponse(self.spend_answer[1], self.spend_answer[0])
            return {"acknowledged": True, "replayed": False, "spends": [], **body}

        @app.put("/events", status_code=204)
        async def events(request: Request):
            if self.audit_down:
                return JSONResponse({"error": {"code": "ServiceUnavailable", "message": "CGS unreachable"}}, 503)
            self.events.append(json.loads(await request.body()))

        return app

    def reset(self) -> None:
        self.documents.clear()
        self.disabled.clear()
        self.events.clear()
        self.disable_after.clear()
        self.checks.clear()
        self.consent_down_after.clear()
        self.contract_disabled = False
        self.audit_down = False
        self.spends.clear()
        self.spend_answer = None


@pytest.fixture(scope="session")
def identities(tmp_path_factory) -> dict[str, MemberIdentity]:
    root = tmp_path_factory.mktemp("members")
    return {name: MemberIdentity.create(root / name, name) for name in ("northwind", "woodgrove", "fabrikam",
                                                                          "outsider")}


@pytest.fixture(scope="session")
def fake_governance(identities) -> FakeGovernance:
    gov = FakeGovernance(members=[
        {"memberId": identities[n].member_id, "certificate": identities[n].cert_pem, "status": "Active",
         "memberData": {"identifier": n}} for n in ("northwind", "woodgrove", "fabrikam")])
    ready = threading.Event()

    def on_ready(port: int) -> None:
        gov.url = f"http://127.0.0.1:{port}"
        ready.set()

    threading.Thread(target=serve, args=(gov.app(), "127.0.0.1", 0), kwargs={"on_ready": on_ready},
                     daemon=True).start()
    assert ready.wait(10)
    return gov


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


@dataclass
class Room:
    analytics: Analytics
    client: TestClient
    gov: FakeGovernance
    identities: dict[str, MemberIdentity]
    mount_root: Path

    @property
    def sink(self) -> Path:
        return self.mount_root / SINK

    def call(self, member: str, method: str, path: str, body: dict | bytes | None = None, *,
             target: str | None = None, now_ms: int | None = None, headers: dict | None = None):
        content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        auth = self.identities[member].authorization(method, target or path, content, now_ms=now_ms)
        return self.client.request(method, path, content=content, headers={"authorization": auth, **(headers or {})})

    def run(self, member: str, query_id: str, body: dict | None = None):
        return self.call(member, "POST", f"/queries/{query_id}/run", body or {})

    def wait(self, member: str, run_id: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.call(member, "GET", f"/runs/{run_id}").json()
            if run["status"] not in ("queued", "preparing", "running"):
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not end: {run}")


def write_story_files(mount_root: Path, nw_rows: int = 12) -> None:
    """The datasets' files and the sink as the room's mounts show them: 12 sales over 3 regions, 3 stores."""
    regions = ["east", "west", "north"]
    write_csv(mount_root / "nwstore" / "part-1.csv", ["region", "amount", "email"],
              [[regions[i % 3], i + 1, f"p{i}@nw.example"] for i in range(nw_rows)])
    write_csv(mount_root / "wgstore" / "stores.csv", ["region", "store"], [[r, f"s-{r}"] for r in regions])
    (mount_root / SINK).mkdir(parents=True, exist_ok=True)


def publish_story(gov: FakeGovernance, identities: dict[str, MemberIdentity], mount_root: Path, *,
                  nw_rows: int = 12) -> None:
    """northwind's sales (CSV) and woodgrove's stores, both accepted; query q1 joining them, approved by both."""
    ids = {n: i.member_id for n, i in identities.items()}
    write_story_files(mount_root, nw_rows)
    gov.publish(NW_DATASET, "dataset", dataset_doc(NW_DATASET, "northwind", "nwstore",
                                                   [("region", "string"), ("amount", "bigint"), ("email", "string")],
                                                   ["region", "amount"]), {ids["northwind"]: True})
    gov.publish(WG_DATASET, "dataset", dataset_doc(WG_DATASET, "woodgrove", "wgstore",
                                                   [("region", "string"), ("store", "string")], ["region", "store"],
                                                   aggregationThreshold=1),
                {ids["woodgrove"]: True})
    gov.publish("q1", "query", query_doc(), {ids["northwind"]: True, ids["woodgrove"]: True})


@pytest.fixture
def room(spark_engine, fake_governance, identities, tmp_path) -> Room:
    fake_governance.reset()
    mount_root = tmp_path / "mnt"
    publish_story(fake_governance, identities, mount_root)
    config = ServiceConfig(governance_url=fake_governance.url, mount_root=mount_root, scratch=tmp_path / "scratch",
                           watch_interval_s=0.05)
    analytics = Analytics(config, spark_engine, AnalyticsGovernance(fake_governance.url))
    with TestClient(build_app(analytics)) as client:
        yield Room(analytics, client, fake_governance, identities, mount_root)
    analytics.close()
