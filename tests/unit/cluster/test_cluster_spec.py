"""The spec's `cluster` section: hostile values are refused with one line naming the field, and a spec
without the section keeps its canonical JSON (so its HOST_DATA) unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.room.group import canonical_spec_json
from sidecars.spec import parse_spec

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "examples" / "analytics" / "spec.yaml"
LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}
IMAGE = "localhost/ccr-analytics@sha256:" + "ab" * 32
GOOD = {"executors": 2, "executor_image": IMAGE, "executor_resources": {"cpu": 1, "memory_gb": 1}}


def _spec(cluster: object | None):
    data = yaml.safe_load(SPEC.read_text())
    if cluster is not None:
        data["cluster"] = copy.deepcopy(cluster)
    return parse_spec(data, source="spec.yaml", variables=LOCAL, base_dir=SPEC.parent)


def test_a_cluster_section_loads_and_is_measured():
    spec = _spec(GOOD)
    assert spec.cluster is not None and spec.cluster.executors == 2
    assert spec.cluster.executor_memory_mb == 512
    assert '"cluster"' in canonical_spec_json(spec)


def test_a_spec_without_a_cluster_keeps_its_canonical_json():
    assert '"cluster"' not in canonical_spec_json(_spec(None))


@pytest.mark.parametrize("change, problem", [
    ({"executors": 0}, "cluster.executors"),
    ({"executors": 65}, "cluster.executors"),
    ({"executors": "2; rm -rf /"}, "cluster.executors"),
    ({"executors": True}, "cluster.executors"),
    ({"executor_image": "localhost/ccr-analytics:latest"}, "not pinned by digest"),
    ({"executor_image": IMAGE + "\nextra"}, "not pinned by digest"),
    ({"executor_image": "localhost/x@sha256:" + "AB" * 32}, "not pinned by digest"),
    ({"executor_resources": {"cpu": -1, "memory_gb": 1}}, "cluster.executor_resources.cpu"),
    ({"executor_memory_mb": 100}, "cluster.executor_memory_mb"),
    ({"executor_memory_mb": 4096}, "does not fit in an executor room"),
    ({"master_url": "spark://evil:7077"}, "cluster.master_url"),
])
def test_a_hostile_cluster_section_is_refused_naming_the_field(change, problem):
    with pytest.raises(SpecError) as raised:
        _spec({**GOOD, **change})
    text = str(raised.value)
    assert problem in text
    assert "Traceback" not in text


def test_a_cluster_section_that_is_not_a_mapping_is_refused():
    with pytest.raises(SpecError, match="cluster"):
        _spec(["executors", 2])
