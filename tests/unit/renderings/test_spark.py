"""`ccr spec render spark`: the SparkApplication validates against the Spark Operator's own CRD, its pods load
into the official kubernetes models, a tampered one is refused, the executor pods' HOST_DATA is the one the
driver's admission admits (and --explain prints), and no secret is in it."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes.client as k8s
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.attestation import MockPlatform, Trust
from sidecars.attestation.providers import MockSnpProvider
from sidecars.cluster.admission import OAEP, Admission, key_binding
from sidecars.common.errors import ConfigError, PolicyDenied
from sidecars.renderings.k8s import CCE_POLICY_ANNOTATION
from sidecars.renderings.layers import LockedImages
from sidecars.renderings.render import render
from sidecars.renderings.spark import (
    SECRET_FILE,
    VIRTUAL_NODE_SELECTOR,
    executor_spec,
    render_cluster,
    spark_application,
)
from sidecars.renderings.sparkcrd import check_spark_application, crd_schema, schema_problems
from sidecars.renderings.sparkexplain import explain_cluster
from sidecars.room.group import render_group
from sidecars.spec import CleanRoomSpec, parse_spec

from .conftest import VARIABLES, images_for
from .strict_models import UnknownProperty, check_openapi

EXECUTOR_IMAGE = "localhost/ccr-analytics@sha256:" + "ab" * 32
CLUSTER = {"executors": 3, "executor_image": EXECUTOR_IMAGE, "executor_resources": {"cpu": 1, "memory_gb": 1}}
ARGS = [a for k, v in VARIABLES.items() for a in ("--var", f"{k}={v}")]
#: the container the operator (spark-submit) makes of the SparkApplication's image for each role
MAIN_CONTAINER = {"driver": "spark-kubernetes-driver", "executor": "spark-kubernetes-executor"}


def cluster_spec(repo: Path, cluster: dict | None = CLUSTER) -> CleanRoomSpec:
    source = repo / "examples/analytics/spec.yaml"
    data = yaml.safe_load(source.read_text())
    if cluster is not None:
        data["cluster"] = copy.deepcopy(cluster)
    return parse_spec(data, source=str(source), variables=VARIABLES, base_dir=source.parent)


def lock_for(spec: CleanRoomSpec) -> LockedImages:
    return LockedImages({**images_for(render_group(spec)).images,
                         **images_for(render_group(executor_spec(spec))).images})


@pytest.fixture(scope="module")
def spec(repo) -> CleanRoomSpec:
    return cluster_spec(repo)


@pytest.fixture(scope="module")
def images(spec) -> LockedImages:
    return lock_for(spec)


@pytest.fixture(scope="module")
def rendering(spec, images):
    return render_cluster(spec, images)


@pytest.fixture
def document(rendering) -> dict:
    return spark_application(rendering)


def operator_pod(document: dict, role: str) -> dict:
    """The pod the operator makes of one role's section: the main Spark container, the section's sidecars and
    init containers, the application's volumes, the section's annotations and placement."""
    section = document["spec"][role]
    main = {"name": MAIN_CONTAINER[role], "image": section["image"], "env": section["env"],
            "command": section["template"]["spec"]["containers"][0]["command"],
            "volumeMounts": section["volumeMounts"], "securityContext": section["securityContext"]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{document['metadata']['name']}-{role}", "annotations": section["annotations"],
                         "labels": section["labels"]},
            "spec": {"initContainers": section["initContainers"], "containers": [main, *section["sidecars"]],
                     "volumes": document["spec"]["volumes"], "nodeSelector": section["nodeSelector"],
                     "tolerations": section["tolerations"], "restartPolicy": "Never",
                     **({"serviceAccountName": section["serviceAccount"]} if "serviceAccount" in section else {})}}


def load_pod(manifest: dict) -> k8s.V1Pod:
    check_openapi(k8s, "V1Pod", manifest)
    return k8s.ApiClient()._ApiClient__deserialize(manifest, "V1Pod")


def annotation_host_data(section: dict) -> str:
    return hashlib.sha256(base64.b64decode(section["annotations"][CCE_POLICY_ANNOTATION])).hexdigest()


def test_the_rendering_validates_against_the_vendored_crd(document, rendering):
    assert schema_problems(document) == []
    assert jsonschema.Draft7Validator(crd_schema()).is_valid(document)
    spec = document["spec"]
    assert spec["executor"]["instances"] == 3 and spec["sparkConf"]["spark.executor.instances"] == "3"
    assert spec["executor"]["image"] == EXECUTOR_IMAGE and spec["driver"]["image"] == rendering.driver.group.app.image
    for role, group in (("driver", rendering.driver.group), ("executor", rendering.executor.group)):
        assert [c["name"] for c in spec[role]["initContainers"]] == ["ccr-firewall"]
        assert [c["name"] for c in spec[role]["sidecars"]] == [c.name for c in group.sidecars]
        assert spec[role]["nodeSelector"] == VIRTUAL_NODE_SELECTOR
    # heap + overhead is the executor room's memory, exactly
    assert (spec["executor"]["memory"], spec["executor"]["memoryOverhead"]) == ("512m", "512m")


def test_the_spark_conf_authenticates_and_encrypts(document):
    conf = document["spec"]["sparkConf"]
    for key in ("spark.authenticate", "spark.network.crypto.enabled", "spark.io.encryption.enabled"):
        assert conf[key] == "true"
    assert conf["spark.network.crypto.saslFallback"] == "false"
    assert conf["spark.dynamicAllocation.enabled"] == "false" and document["spec"]["dynamicAllocation"] == {
        "enabled": False}
    assert conf["spark.authenticate.secret.file"] == SECRET_FILE


@pytest.mark.parametrize("role", ["driver", "executor"])
def test_each_pod_loads_into_the_kubernetes_models_with_its_policy(document, rendering, role):
    pod = load_pod(operator_pod(document, role))
    policy = getattr(rendering, role).policy
    assert base64.b64decode(pod.metadata.annotations[CCE_POLICY_ANNOTATION]).decode() == policy
    main = pod.spec.containers[0]
    assert main.security_context.run_as_non_root and main.security_context.capabilities.drop == ["ALL"]
    assert any(m.mount_path == "/run/ccr" and m.read_only for m in main.volume_mounts)
    assert pod.spec.tolerations[0].key == "virtual-kubelet.io/provider"
    volumes = next(c for c in pod.spec.containers if c.name == "ccr-volumes")
    assert volumes.security_context.privileged is True


def test_a_misspelled_sidecar_field_fails_the_kubernetes_models_and_the_crd(document):
    broken = copy.deepcopy(document)
    sidecar = broken["spec"]["executor"]["sidecars"][0]
    sidecar["volumeMount"] = sidecar.pop("volumeMounts")
    with pytest.raises(UnknownProperty, match="volumeMount"):
        load_pod(operator_pod(broken, "executor"))
    assert any("'volumeMount' is not allowed" in p for p in schema_problems(broken))


def _set(path: str, value):
    """A change at `path` (keys and list indexes, separated by /)."""
    def change(document: dict) -> None:
        *parents, last = path.split("/")
        node = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return change


def _delete(path: str):
    def change(document: dict) -> None:
        *parents, last = path.split("/")
        node = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]
    return change


@pytest.mark.parametrize("tamper, problem", [
    (_set("spec/executor/instances", "3"), "spec.executor.instances: '3' is not of type 'integer'"),
    (_set("spec/executor/instances", True), "spec.executor.instances: True is not of type 'integer'"),
    (_set("spec/driver/cores", 1.5), "spec.driver.cores: 1.5 is not of type 'integer'"),
    (_set("spec/sparkConf/spark.authenticate", True), "is not of type 'string'"),
    (_set("spec/driver/secretValue", "hunter2"), "additional property 'secretValue' is not allowed"),
    (_set("spec/executor/sidecars/0/privilegd", True), "additional property 'privilegd' is not allowed"),
    (_delete("spec/driver"), "spec: 'driver' is a required property"),
    (_delete("spec/mainApplicationFile"), "'mainApplicationFile' is a required property"),
    (_set("spec/type", "Perl"), "spec.type: 'Perl' is not one of"),
    (_set("spec/executor/sidecars/0/ports", [{"containerPort": "80"}]), "is not of type 'integer'"),
])
def test_a_tampered_rendering_is_refused(document, tamper, problem):
    tamper(document)
    problems = schema_problems(document)
    assert any(problem in p for p in problems), problems
    assert not jsonschema.Draft7Validator(crd_schema()).is_valid(document)  # the reference agrees
    with pytest.raises(ConfigError) as raised:
        check_spark_application(document)
    assert "\n" not in str(raised.value) and "does not validate against the operator's CRD" in str(raised.value)


def test_the_executor_host_data_is_the_one_explain_prints_and_admission_admits(document, rendering, spec, images,
                                                                              repo, tmp_path):
    executor = annotation_host_data(document["spec"]["executor"])
    driver = annotation_host_data(document["spec"]["driver"])
    assert executor == rendering.executor.host_data and driver == rendering.driver.host_data
    # the driver pod is the room the spec describes with its app in Spark's form: not the launcher's room
    assert driver != render(spec, images).host_data
    text = explain_cluster(rendering)
    assert re.search(r"executor pods .*each attests with HOST_DATA (\w+)", text)[1] == executor
    assert re.search(r"driver pod: attests with HOST_DATA (\w+)", text)[1] == driver

    platform = MockPlatform.create(tmp_path / "mock-platform")
    admission = Admission(rendering.admission_policy, b"s" * 32,
                          Trust.default().trusting_mock_platform(platform.directory), tmp_path / "audit.jsonl")

    def request(host_data: str) -> tuple[rsa.RSAPrivateKey, dict]:
        key = rsa.generate_private_key(65537, 2048)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        evidence = MockSnpProvider(platform, host_data=bytes.fromhex(host_data)).get_evidence(
            key_binding(der) + bytes(32))
        return key, {"evidence": evidence.to_combined(), "public_key": base64.b64encode(der).decode()}

    key, body = request(executor)
    assert key.decrypt(admission.admit(body, "10.0.0.7"), OAEP) == b"s" * 32
    # the driver's own policy, or an executor of another image, is no executor the members accepted
    other_spec = cluster_spec(repo, {**CLUSTER, "executor_image": "localhost/x@sha256:" + "cd" * 32})
    other = render_cluster(other_spec, lock_for(other_spec))
    for refused in (driver, other.executor.host_data):
        with pytest.raises(PolicyDenied, match="x-ms-sevsnpvm-hostdata"):
            admission.admit(request(refused)[1], "10.0.0.9")


def test_the_executor_policy_is_bound_to_the_driver_spec(repo, spec, rendering):
    """Another driver spec (here: another executor count) gives executors another HOST_DATA: an executor
    accepted for one cluster is no executor of another."""
    other = cluster_spec(repo, {**CLUSTER, "executors": 4})
    assert render_cluster(other, lock_for(other)).executor.host_data != rendering.executor.host_data
    no_cluster = cluster_spec(repo, None)
    assert render(no_cluster, lock_for(spec)).host_data != rendering.driver.host_data  # the cluster is measured


def _keys(node, path="$"):
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key, value
            yield from _keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _keys(value, f"{path}[{i}]")


def test_no_secret_is_in_the_rendering(document):
    text = yaml.safe_dump(document)
    secretish = [(path, value) for path, key, value in _keys(document)
                 if re.search(r"secret|password|token", key, re.I)]
    assert secretish == [("$.spec.sparkConf.spark.authenticate.secret.file", SECRET_FILE)]
    for role in ("driver", "executor"):
        section = document["spec"][role]
        assert not {"secrets", "envSecretKeyRefs", "envFrom"} & section.keys()
        names = {e["name"] for c in (section, *section["sidecars"], *section["initContainers"]) for e in c["env"]}
        assert not any(re.search(r"SECRET|PASSWORD|TOKEN", n) for n in names), names
    # Spark on Kubernetes hands a generated secret to executors in this variable unless a secret file is set
    assert "SPARK_AUTHENTICATE_SECRET" not in text and "_SPARK_AUTH_SECRET" not in text


def test_an_executor_room_over_the_confidential_limits_is_refused_in_one_line(repo):
    spec = cluster_spec(repo, {**CLUSTER, "executor_resources": {"cpu": 4, "memory_gb": 4}})
    with pytest.raises(ConfigError) as raised:
        spark_application(render_cluster(spec, lock_for(spec)))
    message = str(raised.value)
    assert "outside Confidential ACI limits" in message and "\n" not in message
    assert "lower cluster.executor_resources.cpu" in message and "application.resources" not in message


def ccr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def spec_dir(spec, repo, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spark")
    data = yaml.safe_load((repo / "examples/analytics/spec.yaml").read_text())
    (folder / "allow-analytics.rego").write_text((repo / "examples/analytics/allow-analytics.rego").read_text())
    (folder / "nocluster.yaml").write_text(yaml.safe_dump(data))
    (folder / "spec.yaml").write_text(yaml.safe_dump({**data, "cluster": CLUSTER}))
    (folder / "unpinned.yaml").write_text(yaml.safe_dump({**data, "cluster": {**CLUSTER, "executor_image": "x:1"}}))
    (folder / "layers.json").write_text(lock_for(spec).dump())
    return folder


def test_the_command_writes_what_the_module_renders_and_explains_the_same_host_data(spec_dir, document):
    out = spec_dir / "app.yaml"
    done = ccr("deploy", "spark", str(spec_dir / "spec.yaml"), *ARGS, "--layers", str(spec_dir / "layers.json"),
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text()) == document
    explained = ccr("spec", "render", "spark", str(spec_dir / "spec.yaml"), *ARGS,
                    "--layers", str(spec_dir / "layers.json"), "--explain")
    assert explained.returncode == 0, explained.stderr
    assert f"each attests with HOST_DATA {annotation_host_data(document['spec']['executor'])}" in explained.stdout
    assert "whoever deploys: none" in explained.stdout and "Party northwind:" in explained.stdout


@pytest.mark.parametrize("file, extra, code, says", [
    ("nocluster.yaml", [], 2, "the spec has no cluster section"),
    ("unpinned.yaml", [], 1, "cluster.executor_image"),
    ("spec.yaml", ["--service-account", "Admin Account"], 1, "--service-account"),
    ("spec.yaml", ["--main-file", "local:///job.py\nrm -rf /"], 1, "--main-file"),
])
def test_a_bad_spec_or_option_gets_one_line(spec_dir, file, extra, code, says):
    done = ccr("spec", "render", "spark", str(spec_dir / file), *ARGS, "--layers", str(spec_dir / "layers.json"),
               *extra)
    assert done.returncode == code
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and says in done.stderr, done.stderr


def test_the_layer_lock_of_a_cluster_spec_covers_the_executor_image(spec_dir):
    out = spec_dir / "relocked.json"
    done = ccr("spec", "render", "layers", str(spec_dir / "spec.yaml"), *ARGS,
               "--layers", str(spec_dir / "layers.json"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert EXECUTOR_IMAGE in LockedImages.load(out).images
