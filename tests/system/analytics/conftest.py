"""One analytics room for every test of this folder: the demo's room (examples/analytics/demo.py steps 2-5
on the session's stand-ins), with the extra documents the refusals need, brought up once and down at the end.

The extra documents are all in CGS before the room starts (documents are read at run time, so that order is
only for speed): a query whose SQL does not parse, a dataset whose document does not describe its files
(northwind's CSV under another schema), and a dataset that exists only to be revoked (so revoking it
does not change what the other tests see).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.demo_support import LocalRoom, load_demo
from sidecars.analytics.runcommands import RunApi
from sidecars.common.azure_clients import container_client
from sidecars.common.errors import CcrError
from sidecars.common.memberauth import MemberIdentity
from tests.system.rooms import REPO, ccr

EXAMPLE = REPO / "examples" / "analytics"
QUERY_SQL = "SELECT w.segment, COUNT(*) AS purchases FROM northwind n JOIN woodgrove w " \
            "ON n.customer_id = w.customer_id GROUP BY w.segment"


def _query(datasets: dict[str, str], sql: str) -> dict:
    return {"inputDatasets": [{"datasetName": name, "viewName": view} for view, name in datasets.items()],
            "segments": [{"executionSequence": 1, "sql": sql}], "outputDataset": {"datasinkName": "woodgrove-output"}}


def _empty_sink(endpoints_file: str | Path) -> None:
    """A room's sink starts empty. The stand-ins live for the session, so the workspace package's room (the
    same contract and containers) follows this package's, whose results and signed manifest would stay in
    woodgrove-output: its download would be refused (the old manifest, or the old objects outside the new)."""
    endpoints = json.loads(Path(endpoints_file).read_text())
    client = container_client(endpoints["storage_url"], "woodgrove-output", ca_bundle=endpoints.get("ca_bundle"))
    for blob in list(client.list_blobs()):
        client.delete_blob(blob.name)


@dataclass
class AnalyticsRoom:
    demo: object
    room: object            # demo.PreparedRoom
    where: object           # demo.LocalRoom
    ca: Path
    documents: Path

    @property
    def url(self) -> str:
        return f"https://{self.where.address}:{self.demo.APP_PORT}"

    def api(self, member: str | Path) -> RunApi:
        identity = Path(member) if isinstance(member, Path) else Path(self.room.identity(member))
        return RunApi(self.url, str(self.ca), MemberIdentity.load(identity))

    def call(self, member: str | Path, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """The API's answer: (status, body), an error as (http status, {"error": {code, message}})."""
        api = self.api(member)
        try:
            return api.call(method, path, body)
        except CcrError as exc:
            code, _, message = exc.message.partition(": ")
            return exc.http_status, {"error": {"code": code, "message": message}}
        finally:
            api.close()

    def analytics(self, member: str, *args: str, check: bool = True):
        return ccr("analytics", *args, *self.room.governance(member), check=check)

    def sink_objects(self) -> list[str]:
        """Every object name in woodgrove's sink container, as storage holds them now."""
        endpoints = json.loads(Path(self.room.endpoints).read_text())
        client = container_client(endpoints["storage_url"], "woodgrove-output", ca_bundle=endpoints.get("ca_bundle"))
        return sorted(blob.name for blob in client.list_blobs())

    def audit(self) -> list[dict]:
        return self.demo.audit_events(self.room, "northwind")


@pytest.fixture(scope="package")
def analytics_room(stand_ins, tmp_path_factory) -> Iterator[AnalyticsRoom]:
    demo = load_demo("analytics")
    run = tmp_path_factory.mktemp("analytics")
    where = LocalRoom(run)
    try:
        room = demo.prepare(run, stand_ins=stand_ins)
        documents = run / "documents"
        documents.mkdir()
        northwind = json.loads((EXAMPLE / "documents" / "northwind-sales.dataset.json").read_text())
        revocable = {**northwind, "name": "northwind-revocable"}
        # The same files described as another table: "town" where the CSV header says "city".
        misdescribed = {**northwind, "name": "northwind-misdescribed",
                        "schema": [{"name": "town" if c["name"] == "city" else c["name"], "type": c["type"]}
                                   for c in northwind["schema"]],
                        "allowedFields": ["customer_id", "town", "category", "amount"]}
        for document in (revocable, misdescribed):
            path = documents / f"{document['name']}.dataset.json"
            path.write_text(json.dumps(document))
            ccr("analytics", "dataset", "publish", str(path), *room.governance("northwind"))
        queries = {
            "bad-sql": _query({"northwind": "northwind-sales", "woodgrove": "woodgrove-customers"},
                              "SELEC w.segment FROM woodgrove w"),
            "over-revocable": _query({"northwind": "northwind-revocable", "woodgrove": "woodgrove-customers"},
                                     QUERY_SQL),
            "over-misdescribed": _query({"northwind": "northwind-misdescribed"},
                                        "SELECT n.town, COUNT(*) AS purchases FROM northwind n GROUP BY n.town"),
        }
        for query_id, document in queries.items():
            path = documents / f"{query_id}.query.json"
            path.write_text(json.dumps(document))
            ccr("analytics", "query", "propose", str(path), "--id", query_id, *room.governance("woodgrove"))
            ccr("analytics", "query", "vote", query_id, "accept", *room.governance("northwind"))
        ca = demo.contract_ca(room.spec, room.endpoints, room.members / "woodgrove", run / "contract-ca.pem")
        _empty_sink(room.endpoints)
        where.up(room.spec, room.endpoints)
        demo.wait_until_serving(room, where.address, ca)
        yield AnalyticsRoom(demo, room, where, ca, documents)
    finally:
        where.leave_nothing_behind()
