"""How a cluster run ends: `succeeded` only when its driver exited 0 and the run is published whole; any
other end is `failed` and leaves nothing of the run's staged parts in the sink."""

from __future__ import annotations

from sidecars.cluster.job import FAILED, SUCCEEDED, settle, staging_dir


def _published(sink, run_id: str) -> None:
    (sink / run_id).mkdir()
    (sink / run_id / "part-00000.csv").write_text("name\nx\n")
    (sink / run_id / "_SUCCESS").write_text("")


def _staged(sink, run_id: str) -> None:
    staging = staging_dir(sink, run_id) / "_temporary" / "0"
    staging.mkdir(parents=True)
    (staging / "part-00000.csv").write_text("name\nx\n")


def test_a_published_run_whose_driver_exited_0_succeeded(tmp_path):
    _published(tmp_path, "r1")
    assert settle(tmp_path, "r1", 0) == SUCCEEDED
    assert (tmp_path / "r1" / "_SUCCESS").exists()


def test_a_killed_driver_fails_the_run_and_its_staged_parts_go(tmp_path):
    _staged(tmp_path, "r2")
    assert settle(tmp_path, "r2", -9) == FAILED
    assert list(tmp_path.iterdir()) == []


def test_an_exit_0_without_a_whole_publication_is_a_failure(tmp_path):
    _staged(tmp_path, "r3")
    assert settle(tmp_path, "r3", 0) == FAILED
    (tmp_path / "r4").mkdir()  # a folder of that name without the job commit's _SUCCESS
    assert settle(tmp_path, "r4", 0) == FAILED
    assert settle(tmp_path, "r5", None) == FAILED  # still running or never started


def test_other_runs_are_left_alone(tmp_path):
    _published(tmp_path, "other")
    _staged(tmp_path, "other-staged")
    _staged(tmp_path, "r6")
    settle(tmp_path, "r6", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-other-staged", "other"]
