"""The stand-in's record of what it received (used for whole demo runs, see `demo_wire`): it sees the real wire
and names the legacy one."""

from __future__ import annotations

from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import wait_until
from tests.conformance import reference
from tests.conformance.conftest import ReferenceClient, start_standin
from tests.conformance.demo_wire import read_wire_log, recording_env, wire_log_problems


def test_wire_log_passes_the_real_wire_and_names_the_legacy_one(tmp_path, conformance_ca):
    log = tmp_path / "wire.jsonl"
    standin = start_standin(tmp_path / "standin", conformance_ca, env=recording_env(log))
    try:
        anonymous = ReferenceClient(standin, None)
        assert anonymous.http.get("/gov/tx", params={"transaction_id": "2.1"}).status_code == 200
        assert anonymous.http.get("/app/tx", params={"transaction_id": "2.1"}).status_code == 200
        wait_until(lambda: len(read_wire_log(log)) == 2, 5, "the stand-in's record of both requests")
        real = read_wire_log(log)
        assert [(r["path"], r["status"]) for r in real] == [("/gov/tx", 200), ("/app/tx", 200)]
        assert wire_log_problems(real) == []

        legacy = MemberIdentity.create(tmp_path / "legacy", "legacy")
        anonymous.http.post("/app/contracts/c/consentcheck/execution", json={})
        anonymous.http.get("/app/contracts", headers={"authorization": legacy.authorization("GET", "/app/contracts",
                                                                                               b"")})
        anonymous.http.post("/gov/members/proposals:create", content=reference.proposal_payload(),
                            headers={"content-type": "application/json"})
        wait_until(lambda: len(read_wire_log(log)) == 5, 5, "the stand-in's record of the legacy requests")
        problems = "\n".join(wire_log_problems(read_wire_log(log)[len(real):]))
        assert "consentcheck/execution: legacy path" in problems
        assert "legacy CCR-Member header" in problems
        assert "/gov without api-version" in problems and "not application/cose" in problems
        anonymous.close()
    finally:
        standin.proc.stop()
