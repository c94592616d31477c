"""The AKS confidential virtual node pod loads into the official kubernetes client models, strictly."""

from __future__ import annotations

import base64
import copy

import kubernetes.client as k8s
import pytest

from sidecars.renderings.cce import render_policy
from sidecars.renderings.k8s import CCE_POLICY_ANNOTATION, pod_manifest

from .strict_models import UnknownProperty, check_openapi


@pytest.fixture
def pod(job_group, job_images):
    return pod_manifest(job_group, render_policy(job_group, job_images))


def load_pod(manifest: dict) -> k8s.V1Pod:
    check_openapi(k8s, "V1Pod", manifest)
    return k8s.ApiClient()._ApiClient__deserialize(manifest, "V1Pod")


def test_pod_loads_into_the_kubernetes_models(pod, job_group, job_images):
    loaded = load_pod(pod)
    assert [c.name for c in loaded.spec.init_containers] == ["ccr-firewall"]
    assert [c.name for c in loaded.spec.containers] == [c.name for c in job_group.sidecars]
    assert loaded.spec.restart_policy == "Never"
    policy = base64.b64decode(loaded.metadata.annotations[CCE_POLICY_ANNOTATION]).decode()
    assert policy == render_policy(job_group, job_images)
    volumes = next(c for c in loaded.spec.containers if c.name == "ccr-volumes")
    assert volumes.security_context.privileged is True
    assert any(m.mount_propagation == "Bidirectional" for m in volumes.volume_mounts)


def test_misspelled_field_fails_the_check(pod):
    broken = copy.deepcopy(pod)
    broken["spec"]["containers"][0]["volumeMount"] = broken["spec"]["containers"][0].pop("volumeMounts")
    with pytest.raises(UnknownProperty, match="volumeMount"):
        load_pod(broken)
