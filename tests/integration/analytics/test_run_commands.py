"""`ccr analytics run|runs` (the CLI, handlers in runcommands.py) against the app served over TLS from a contract
CA: signed requests, the CA verified, --wait following the run, exit codes and one-line reasons."""

from __future__ import annotations

import argparse
import threading

import pytest

from sidecars.analytics.runcommands import cmd_run
from sidecars.analytics.service import build_app
from sidecars.cli import main as ccr
from sidecars.common.errors import CcrError, ConfigError
from sidecars.common.http import serve
from sidecars.common.tls import LocalCA

#: a real Spark session (started once, ~15 s) runs these
pytestmark = pytest.mark.slow


@pytest.fixture
def served(room, tmp_path):
    """The room's app over HTTPS, its certificate issued by a contract CA the members trust."""
    ca = LocalCA.create(tmp_path / "contract-ca")
    tls = ca.issue_server_cert("analytics")
    ready, port = threading.Event(), []

    def on_ready(bound: int) -> None:
        port.append(bound)
        ready.set()

    threading.Thread(target=serve, args=(build_app(room.analytics), "127.0.0.1", 0),
                     kwargs={"tls": tls, "on_ready": on_ready}, daemon=True).start()
    assert ready.wait(10)
    return f"https://127.0.0.1:{port[0]}", str(ca.cert_file), tmp_path


def args(room, url, ca, member="woodgrove", **extra):
    values = {"query": "q1", "run_id": None, "dry_run": False, "start_date": None, "end_date": None, "wait": True,
              "timeout": 120.0, "url": url, "contract_ca": ca, "identity": str(room.identities[member].directory),
              "run": None}
    values.update(extra)
    return argparse.Namespace(**values)


def test_ccr_analytics_run_wait_follows_the_run_to_success_and_runs_lists_it(room, served, capsys):
    url, ca, _ = served
    connection = ["--url", url, "--contract-ca", ca]
    assert ccr(["analytics", "run", "q1", "--run-id", "cli1", "--wait", *connection,
                "--identity", str(room.identities["woodgrove"].directory)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] in ("run cli1: queued", "run cli1: running")
    assert "run cli1: succeeded, 3 rows written, 0 groups suppressed: cli1/segment-1.csv" in out
    assert ccr(["analytics", "runs", "--query", "q1", *connection,
                "--identity", str(room.identities["northwind"].directory)]) == 0
    assert "run cli1: succeeded" in capsys.readouterr().out
    # a refusal through the CLI: exit 1, one line on stderr
    room.gov.disabled["nw-sales"] = "revoked by northwind"
    assert ccr(["analytics", "run", "q1", *connection, "--identity", str(room.identities["woodgrove"].directory)]) == 1
    # (the in-process server's own log lines share stderr here: the CLI's are those starting "ccr:")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ccr")]
    assert len(err) == 1 and err[0].startswith("ccr: error: ConsentRevoked: execution consent for dataset 'nw-sales'")


def test_a_refused_run_exits_1_with_the_one_line_reason(room, served, capsys):
    url, ca, _ = served
    room.gov.disabled["nw-sales"] = "revoked by northwind"
    with pytest.raises(CcrError, match=r"^ConsentRevoked: execution consent for dataset 'nw-sales'"):
        cmd_run(args(room, url, ca))


def test_a_run_that_ends_refused_exits_1_naming_the_file(room, served, capsys):
    url, ca, _ = served
    (room.mount_root / "nwstore" / "part-2.csv").write_text("region,price,email\neast,1,x\n")
    assert cmd_run(args(room, url, ca, run_id="cli2")) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ccr")]
    assert len(err) == 1 and "part-2.csv" in err[0]
    assert err[0].startswith("ccr: error: run cli2 refused: SchemaMismatch:")


def test_a_dry_run_exits_0_as_validated(room, served, capsys):
    url, ca, _ = served
    assert cmd_run(args(room, url, ca, dry_run=True)) == 0
    assert ": validated" in capsys.readouterr().out


def test_a_server_not_issued_by_the_contract_ca_is_refused(room, served):
    url, _, tmp_path = served
    other = LocalCA.create(tmp_path / "other-ca")
    with pytest.raises(CcrError, match="unreachable"):
        cmd_run(args(room, url, str(other.cert_file)))
    with pytest.raises(ConfigError, match="https only"):
        cmd_run(args(room, url.replace("https", "http"), str(other.cert_file)))
