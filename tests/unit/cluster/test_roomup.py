"""`ccr room up|down` of a cluster, for what a user or a leftover file can get wrong: one line, no traceback,
and `down` never signals a process that is not the run directory's keeper."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecars.cli import main
from sidecars.cluster.keeper import STATE_FILE

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "examples" / "analytics" / "spec.yaml"


def _cluster_spec(folder: Path, name: str = "clu2-unit") -> Path:
    document = yaml.safe_load(SPEC.read_text())
    document.update(name=name, cluster={"executors": 2, "executor_image": f"localhost/x@sha256:{'ab' * 32}",
                                        "executor_resources": {"cpu": 1, "memory_gb": 1}})
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("ccr: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_wait_is_refused_for_a_cluster(tmp_path, capsys):
    spec = _cluster_spec(tmp_path)
    (tmp_path / "endpoints.json").write_text("{}")
    assert main(["room", "up", str(spec), "--endpoints", str(tmp_path / "endpoints.json"),
                 "--run-dir", str(tmp_path / "run"), "--wait"]) == 1
    assert "--wait is for a job room" in _one_error_line(capsys)
    assert not (tmp_path / "run" / STATE_FILE).exists()


def test_a_hostile_cluster_name_is_refused_before_anything_starts(tmp_path, capsys):
    spec = _cluster_spec(tmp_path, name="../../etc")
    (tmp_path / "endpoints.json").write_text("{}")
    assert main(["room", "up", str(spec), "--endpoints", str(tmp_path / "endpoints.json"),
                 "--run-dir", str(tmp_path / "run")]) == 1
    assert "cluster name '../../etc'" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("record", ['{"name": "../../x", "pid": 1}', '{"pid": 1}', "[1, 2]", "not json", "{" * 5000])
def test_down_of_a_broken_cluster_record_is_one_line(tmp_path, capsys, record):
    (tmp_path / STATE_FILE).write_text(record)
    assert main(["room", "down", "--run-dir", str(tmp_path)]) == 1
    _one_error_line(capsys)


def test_down_signals_only_the_run_directorys_keeper(tmp_path, capsys):
    """A record whose pid is now another process (the keeper ended, its number was reused): not signalled."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / STATE_FILE).write_text(json.dumps({"name": "clu2-unit", "pid": other.pid, "state": "up"}))
        assert main(["room", "down", "--run-dir", str(tmp_path)]) == 0
        assert "cluster clu2-unit is down" in capsys.readouterr().out
        assert other.poll() is None
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        other.kill()
        other.wait()
