"""`ccr spec render spark`: the SparkApplication validates against the Spark Operator's own CRD, its pods load
into the official kubernetes models, a tampered one is refused, the executor pods' HOST_DATA is the one the
driver's admission admits (and --explain prints), and no secret is in it."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
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
from sidecars.cluster.admission import OAEP, Admission, AdmissionPolicy, key_binding
from sidecars.common.errors import ConfigError, PolicyDenied
from sidecars.renderings.cce import EnvPattern, EnvPatternError, capability_sets
from sidecars.renderings.enforcer import GuestRequests, PolicyEnforcer, create_container_request, emptydir_mount
from sidecars.renderings.k8s import CCE_POLICY_ANNOTATION
from sidecars.renderings.layers import LockedImages
from sidecars.renderings.render import render
from sidecars.renderings.spark import (
    DEFAULT_MAIN_FILE,
    JOB_ARGS_FILE,
    SECRET_FILE,
    VIRTUAL_NODE_SELECTOR,
    executor_spec,
    render_cluster,
    spark_application,
)
from sidecars.renderings.sparkcrd import check_spark_application, crd_schema, pod_template_schema, schema_problems
from sidecars.renderings.sparkexplain import explain_cluster
from sidecars.renderings.sparkpod import ENTRY_COMMAND
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
    """The pod Spark makes of one role's section: its pod template (the operator writes it to
    spark.kubernetes.*.podTemplateFile), with the section's image, annotations, labels and service account."""
    section = section_of(document, role)
    template = copy.deepcopy(section["template"])
    template["spec"]["containers"][0]["image"] = section["image"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{document['metadata']['name']}-{role}", "annotations": section["annotations"],
                         "labels": section["labels"]},
            "spec": {**template["spec"], "restartPolicy": "Never",
                     **({"serviceAccountName": section["serviceAccount"]} if "serviceAccount" in section else {})}}


def section_of(document: dict, role: str) -> dict:
    return document["spec"][role]


def template_containers(section: dict) -> list[dict]:
    return section["template"]["spec"]["containers"]


def load_pod(manifest: dict) -> k8s.V1Pod:
    check_openapi(k8s, "V1Pod", manifest)
    return k8s.ApiClient()._ApiClient__deserialize(manifest, "V1Pod")


def reference_valid(document: dict) -> bool:
    """jsonschema's verdict: the CRD's schema, and each role's pod template against its template schema."""
    templates = [document["spec"][role]["template"] for role in ("driver", "executor")
                 if isinstance(document["spec"].get(role), dict) and "template" in document["spec"][role]]
    return (jsonschema.Draft7Validator(crd_schema()).is_valid(document)
            and all(jsonschema.Draft7Validator(pod_template_schema()).is_valid(t) for t in templates))


def annotation_host_data(section: dict) -> str:
    return hashlib.sha256(base64.b64decode(section["annotations"][CCE_POLICY_ANNOTATION])).hexdigest()


def test_the_rendering_validates_against_the_vendored_crd(document, rendering):
    assert schema_problems(document) == []
    assert reference_valid(document)
    spec = document["spec"]
    assert spec["executor"]["instances"] == 3 and spec["sparkConf"]["spark.executor.instances"] == "3"
    assert spec["executor"]["image"] == EXECUTOR_IMAGE and spec["driver"]["image"] == rendering.driver.group.app.image
    for role, group in (("driver", rendering.driver.group), ("executor", rendering.executor.group)):
        pod = spec[role]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["ccr-firewall"]
        assert [c["name"] for c in pod["containers"]] == [MAIN_CONTAINER[role], *(c.name for c in group.sidecars)]
        assert pod["nodeSelector"] == VIRTUAL_NODE_SELECTOR
        assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is (role == "driver")
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
    sidecar = template_containers(broken["spec"]["executor"])[1]
    sidecar["volumeMount"] = sidecar.pop("volumeMounts")
    with pytest.raises(UnknownProperty, match="volumeMount"):
        load_pod(operator_pod(broken, "executor"))
    assert any("spec.executor.template.spec.containers.1: additional property 'volumeMount' is not allowed" in p
               for p in schema_problems(broken))


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
    (_set("spec/executor/template/spec/containers/1/privilegd", True),
     "spec.executor.template.spec.containers.1: additional property 'privilegd' is not allowed"),
    (_set("spec/driver/template/spec/hostNetwork", True),
     "spec.driver.template.spec: additional property 'hostNetwork' is not allowed"),
    (_set("spec/driver/template/spec/containers/0/command", "sh"), "is not of type 'array'"),
    (_delete("spec/driver"), "spec: 'driver' is a required property"),
    (_delete("spec/mainApplicationFile"), "'mainApplicationFile' is a required property"),
    (_set("spec/type", "Perl"), "spec.type: 'Perl' is not one of"),
    (_set("spec/executor/template/spec/containers/1/ports", [{"containerPort": "80"}]), "is not of type 'integer'"),
])
def test_a_tampered_rendering_is_refused(document, tamper, problem):
    tamper(document)
    problems = schema_problems(document)
    assert any(problem in p for p in problems), problems
    assert not reference_valid(document)  # the reference agrees
    with pytest.raises(ConfigError) as raised:
        check_spark_application(document)
    assert "\n" not in str(raised.value) and "does not validate against the operator's CRD" in str(raised.value)


class AcceptedInGovernance:
    """What the driver's admission reads from CGS (sidecars.cluster.governance.CgsExecutorPolicy), here the
    policy the members would accept for this rendering."""

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy, self.events = policy, []

    def accepted_policy(self) -> AdmissionPolicy:
        return self.policy

    def audit(self, record: dict) -> None:
        self.events.append(record)


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
    admission = Admission(AcceptedInGovernance(rendering.admission_policy), b"s" * 32,
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
                 if re.search(r"secret|password|token", key, re.I)
                 and not (key == "automountServiceAccountToken" and isinstance(value, bool))]  # a switch
    assert secretish == [("$.spec.sparkConf.spark.authenticate.secret.file", SECRET_FILE)]
    for role in ("driver", "executor"):
        section = document["spec"][role]
        assert not {"secrets", "envSecretKeyRefs", "envFrom", "env"} & section.keys()
        pod = section["template"]["spec"]
        names = {e["name"] for c in (*pod["containers"], *pod["initContainers"]) for e in c["env"]}
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


# --- the Spark container as Spark's Kubernetes backend starts it, against each pod's policy ---------------------

#: a run's values the policy cannot know in advance (what Kubernetes and spark-submit set per pod)
APP_ID = "spark-" + "0123456789abcdef" * 2
DRIVER_IP, EXECUTOR_IP, MASTER_IP = "10.244.1.17", "10.244.2.5", "10.0.0.1"


def kubernetes_service_env() -> list[str]:
    """The master service's variables the kubelet gives every container."""
    return [f"KUBERNETES_SERVICE_HOST={MASTER_IP}", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
            f"KUBERNETES_PORT=tcp://{MASTER_IP}:443", f"KUBERNETES_PORT_443_TCP=tcp://{MASTER_IP}:443",
            "KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443",
            f"KUBERNETES_PORT_443_TCP_ADDR={MASTER_IP}"]


def executor_java_opts(conf: dict) -> list[str]:
    """SparkConf.isExecutorStartupConf (core/src/main/scala/org/apache/spark/SparkConf.scala) of the driver's
    settings, as BasicExecutorFeatureStep numbers them (`-Dkey=value`, in the conf's hash order: reversed here)."""
    keys = [k for k in conf if (k.startswith("spark.auth") and k != "spark.authenticate.secret")
            or k.startswith(("spark.rpc", "spark.network", "spark.port.")) or (k.startswith("spark.")
                                                                               and k.endswith(".port"))]
    return [f"SPARK_JAVA_OPT_{i}=-D{k}={conf[k]}" for i, k in enumerate(sorted(keys, reverse=True))]


def spark_started(document: dict, role: str, images: LockedImages) -> GuestRequests:
    """The create_container request for the Spark container of a role's pod, built from what Spark 4 sets
    (resource-managers/kubernetes/core/src/main/scala/org/apache/spark/deploy/k8s/): the pod template's command
    plus DriverCommandFeatureStep's `driver --properties-file /opt/spark/conf/spark.properties --class
    org.apache.spark.deploy.PythonRunner MAIN ARGS` or BasicExecutorFeatureStep's `executor`; the section's env,
    BasicDriverFeatureStep's / BasicExecutorFeatureStep's variables, submit/Client.scala's SPARK_CONF_DIR and
    config map mount at /opt/spark/conf and PodTemplateConfigMapStep's at /opt/spark/pod-template (driver),
    LocalDirsFeatureStep's SPARK_LOCAL_DIRS and spark-local-dir-1;
    and the virtual node's mounts (resolv.conf, service account token, hosts, termination log, hostname)."""
    spec = document["spec"]
    section, conf = spec[role], spec["sparkConf"]
    image = images.resolve(section["image"])
    main = template_containers(section)[0]
    command = main["command"]
    local_dir = conf["spark.local.dir"]
    env = {e.split("=", 1)[0]: e for e in image.env}
    env.update({e["name"]: f"{e['name']}={e['value']}" for e in main["env"]})
    spark_env = ["SPARK_USER=spark", f"SPARK_APPLICATION_ID={APP_ID}", "SPARK_CONF_DIR=/opt/spark/conf",
                 f"SPARK_LOCAL_DIRS={local_dir}", *kubernetes_service_env()]
    mounts = [emptydir_mount(m["mountPath"], m["name"], "rprivate", "ro" if m["readOnly"] else "rw")
              for m in main["volumeMounts"]]
    mounts.append(emptydir_mount(local_dir, "spark-local-dir-1", "rprivate", "rw"))
    if role == "driver":
        args = ["driver", "--properties-file", "/opt/spark/conf/spark.properties", "--class",
                "org.apache.spark.deploy.PythonRunner", spec["mainApplicationFile"], *spec["arguments"]]
        spark_env += [f"SPARK_DRIVER_BIND_ADDRESS={DRIVER_IP}", f"PYSPARK_PYTHON={conf['spark.pyspark.python']}",
                      f"PYSPARK_DRIVER_PYTHON={conf['spark.pyspark.driver.python']}"]
        mounts.append(emptydir_mount("/opt/spark/conf", "spark-conf-volume-driver", "rprivate", "rw"))
        # PodTemplateConfigMapStep: the executors' pod template, for the driver to make executor pods from
        mounts.append(emptydir_mount("/opt/spark/pod-template", "pod-template-volume", "rprivate", "rw"))
    else:
        args = ["executor"]
        spark_env += [f"SPARK_DRIVER_URL=spark://CoarseGrainedScheduler@analytics-3f2a9c1d-driver-svc.clean.svc:"
                      f"{conf['spark.driver.port']}", f"SPARK_EXECUTOR_CORES={conf['spark.executor.cores']}",
                      f"SPARK_EXECUTOR_MEMORY={section['memory']}", "SPARK_EXECUTOR_ID=2",
                      "SPARK_RESOURCE_PROFILE_ID=0", f"SPARK_EXECUTOR_POD_IP={EXECUTOR_IP}",
                      "SPARK_EXECUTOR_POD_NAME=analytics-3f2a9c1d-exec-2", *executor_java_opts(conf)]
    for name, destination, mode in (("resolv", "/etc/resolv.conf", "rw"),
                                    ("token", "/var/run/secrets/kubernetes.io/serviceaccount", "ro"),
                                    ("hosts", "/etc/hosts", "rw"), ("termination", "/dev/termination-log", "rw"),
                                    ("hostname", "/etc/hostname", "rw")):
        mounts.append(emptydir_mount(destination, name, "rshared", mode))
    security = main["securityContext"]
    create = create_container_request(
        f"spark-{role}-c0ffee", command=[*command, *args],
        env=[*env.values(), *spark_env, "HOSTNAME=analytics-driver"], working_dir=image.working_dir or "/",
        mounts=mounts, privileged=False, no_new_privileges=not security["allowPrivilegeEscalation"],
        uid=security["runAsUser"], gid=security["runAsGroup"],
        capabilities=capability_sets(privileged=False, drop_all=security["capabilities"]["drop"] == ["ALL"]))
    return GuestRequests(container_id=create["containerID"], layers=image.layers, create=create)


def start_in_pod(document: dict, role: str, request: GuestRequests) -> None:
    enforcer = PolicyEnforcer(base64.b64decode(document["spec"][role]["annotations"][CCE_POLICY_ANNOTATION]).decode())
    try:
        request.start(enforcer)
    finally:
        enforcer.close()


@pytest.mark.parametrize("role", ["driver", "executor"])
def test_the_policy_admits_the_spark_container_as_spark_starts_it(document, images, role):
    start_in_pod(document, role, spark_started(document, role, images))


def _args(change):
    def tamper(create: dict) -> None:
        create["argList"] = change(create["argList"])
    return tamper


def _env(name: str, value: str | None):
    """Set (or with None, remove) one variable of the request's environment."""
    def tamper(create: dict) -> None:
        kept = [e for e in create["envList"] if e.split("=", 1)[0] != name]
        create["envList"] = kept + ([f"{name}={value}"] if value is not None else [])
    return tamper


def _mount(destination: str):
    """One more emptyDir mount, over a path of the image."""
    def tamper(create: dict) -> None:
        create["mounts"] = [*create["mounts"], emptydir_mount(destination, "extra", "rprivate", "rw")]
    return tamper


@pytest.mark.parametrize("role, tamper", [
    ("driver", _mount("/opt/ccr/lib/python3.11/site-packages")),  # code replaced under the measured layers
    ("executor", _mount("/opt/spark/conf")),  # executors take no config map
    ("driver", _args(lambda a: [*a[:-2], "local:///tmp/other.py", a[-1]])),  # another driver program
    ("driver", _args(lambda a: [*a, "--conf", "spark.authenticate=false"])),
    ("driver", _args(lambda a: ["/bin/sh", "-c", "id", *a[3:]])),  # another command, the same arguments
    ("executor", _args(lambda a: [*a[:-1], "driver"])),
    ("driver", _env("LD_PRELOAD", "/run/ccr/evil.so")),  # an extra variable
    ("executor", _env("SPARK_AUTHENTICATE_SECRET", "s3cret")),
    ("driver", _env("REDIS_SERVICE_HOST", "10.0.0.9")),  # another service's link variable
    ("driver", _env("SPARK_DRIVER_BIND_ADDRESS", ".*")),  # a pattern as the value
    ("driver", _env("SPARK_DRIVER_BIND_ADDRESS", "10.244.1.17 -Dx=y")),
    ("driver", _env("SPARK_APPLICATION_ID", "spark-.*")),
    ("driver", _env("PYSPARK_PYTHON", "/tmp/python")),  # a fixed value changed
    ("executor", _env("SPARK_EXECUTOR_ID", "2; id")),
    ("executor", _env("SPARK_EXECUTOR_ID", "0")),
    ("executor", _env("SPARK_DRIVER_URL", "spark://CoarseGrainedScheduler@attacker.example.com:7078")),
    ("executor", _env("SPARK_DRIVER_URL", "spark://CoarseGrainedScheduler@redis.clean.svc:7078")),  # not a driver
    ("executor", _env("SPARK_EXECUTOR_POD_NAME", "kube-apiserver")),
    ("executor", _env("SPARK_JAVA_OPT_0", "-Dspark.authenticate=false")),
    ("executor", _env("SPARK_JAVA_OPT_9", "-Dspark.network.crypto.enabled=true")),  # an index past the count
    ("executor", _env("SPARK_EXECUTOR_MEMORY", "64g")),
    ("executor", _env("SPARK_EXECUTOR_POD_IP", None)),  # a required variable missing
    ("executor", _env("KUBERNETES_SERVICE_HOST", "10.0.0.1\nLD_PRELOAD=/x")),
])
def test_the_policy_refuses_an_altered_spark_container(document, images, role, tamper):
    request = spark_started(document, role, images)
    tamper(request.create)
    with pytest.raises(PolicyDenied, match="create_container denied"):
        start_in_pod(document, role, request)


def test_an_env_pattern_cannot_reach_past_its_part():
    rule = re.compile(EnvPattern("SPARK_A|SPARK_B", "[0-9]+").pattern)
    assert rule.fullmatch("SPARK_B=12") and not rule.fullmatch("SPARK_B=12x") and not rule.fullmatch("X=1|SPARK_B=1")
    for name in (".*", "X=.*", "[^A]", "X\\w", "[)-?]"):
        with pytest.raises(EnvPatternError, match="env name pattern"):
            EnvPattern(name, "1")
    with pytest.raises(EnvPatternError, match="missing"):
        EnvPattern("X", "(")


def test_the_driver_program_gets_its_arguments_file(document, rendering):
    """sidecars/cluster/job.py takes one argument, its run's arguments file, which the room writes in its own
    volume: the SparkApplication passes it, and the driver policy measures it in the container's arguments."""
    assert document["spec"]["arguments"] == [JOB_ARGS_FILE] and JOB_ARGS_FILE.startswith("/run/ccr/")
    assert rendering.driver.group.app.command[-2:] == (DEFAULT_MAIN_FILE, JOB_ARGS_FILE)
    other = spark_application(render_cluster(rendering.spec, lock_for(rendering.spec),
                                             main_file="local:///opt/other.py"))
    assert annotation_host_data(other["spec"]["driver"]) != annotation_host_data(document["spec"]["driver"])
    assert annotation_host_data(other["spec"]["executor"]) == annotation_host_data(document["spec"]["executor"])


SPARKJOB = Path(__file__).resolve().parents[3] / "sidecars/renderings/sparkjob.py"


def run_sparkjob(*args: str) -> subprocess.CompletedProcess:
    """The default main file as Spark's PythonRunner starts it: `python FILE ARGS`, a script."""
    return subprocess.run([sys.executable, str(SPARKJOB), *args], capture_output=True, text=True, timeout=600)


def test_the_default_main_file_runs_the_cluster_job_as_spark_runs_it(tmp_path):
    """job.py itself fails as a script (relative imports); the default main file runs it: a real local Spark
    run of views, query and published parts, from the arguments file job.py reads."""
    assert DEFAULT_MAIN_FILE.endswith("/site-packages/sidecars/renderings/sparkjob.py")
    direct = subprocess.run([sys.executable, str(SPARKJOB.parents[1] / "cluster/job.py"), "x.json"],
                            capture_output=True, text=True, timeout=120)
    assert "attempted relative import" in direct.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data/t.csv").write_text("k,v\na,1\nb,2\na,3\n")
    args = {"master": "local[1]", "conf": {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"},
            "views": {"t": str(tmp_path / "data")}, "sql": "SELECT k, SUM(v) AS total FROM t GROUP BY k ORDER BY k",
            "sink": str(tmp_path / "sink"), "run_id": "r1", "parts": 1}
    (tmp_path / "sink").mkdir()
    (tmp_path / "args.json").write_text(json.dumps(args))
    done = run_sparkjob(str(tmp_path / "args.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for part in sorted((tmp_path / "sink/r1").glob("part-*.csv")) for line in part.read_text().split()]
    assert rows == ["k,total", "a,4.0", "b,2.0"]


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"),
    ("{not json", "is not JSON"),
    ("[1]", "holds no JSON object"),
    ('{"master": "local[1]"}', "lacks conf, views, sql, sink, run_id, parts"),
    ("x" * (1 << 20 + 1), "larger than"),
])
def test_a_bad_arguments_file_gets_one_line(tmp_path, content, says):
    path = tmp_path / "args.json"
    if content is not None:
        path.write_text(content)
    done = run_sparkjob(str(path))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1 and says in done.stderr, done.stderr
    usage = run_sparkjob()
    assert usage.returncode == 2 and usage.stderr.startswith("usage: sparkjob.py ARGS.json")


def test_the_entry_script_starts_each_role_as_spark_images_do(tmp_path):
    """ENTRY_COMMAND with the arguments Spark appends, in bash, with a spark-submit and a java that print the
    command line they were given: the driver's spark-submit call and the executor's JVM, with the driver's
    start-up settings in index order (10 after 9) and values with spaces kept whole."""
    for tool in ("spark/bin/spark-submit", "jdk/bin/java"):
        path = tmp_path / tool
        path.parent.mkdir(parents=True)
        path.write_text('#!/bin/sh\nfor a in "$0" "$@"; do printf "%s\\n" "$a"; done\n')
        path.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SPARK_HOME": str(tmp_path / "spark"), "JAVA_HOME": str(tmp_path / "jdk"),
           "SPARK_DRIVER_BIND_ADDRESS": DRIVER_IP, "SPARK_CONF_DIR": "/opt/spark/conf",
           "SPARK_EXECUTOR_MEMORY": "512m",
           "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@d-driver-svc.ns.svc:7078",
           "SPARK_EXECUTOR_ID": "2", "SPARK_EXECUTOR_CORES": "1", "SPARK_APPLICATION_ID": APP_ID,
           "SPARK_EXECUTOR_POD_IP": EXECUTOR_IP, "SPARK_RESOURCE_PROFILE_ID": "0",
           "SPARK_EXECUTOR_POD_NAME": "d-exec-2",
           **{f"SPARK_JAVA_OPT_{i}": f"-Dopt{i}=v {i}" for i in range(11)}}

    def run(*args: str) -> list[str]:
        done = subprocess.run([*ENTRY_COMMAND, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    driver = run("driver", "--properties-file", "/opt/spark/conf/spark.properties", "--class", "C", "main.py", "a b")
    assert driver == [str(tmp_path / "spark/bin/spark-submit"), "--conf", f"spark.driver.bindAddress={DRIVER_IP}",
                      "--deploy-mode", "client", "--properties-file", "/opt/spark/conf/spark.properties", "--class",
                      "C", "main.py", "a b"]
    executor = run("executor")
    assert executor[:14] == [str(tmp_path / "jdk/bin/java"), *(f"-Dopt{i}=v {i}" for i in range(11)),
                             "-Xms512m", "-Xmx512m"]
    assert executor[14:16] == ["-cp", f"/opt/spark/conf:{tmp_path}/spark/jars/*"]
    assert executor[16:] == [
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", env["SPARK_DRIVER_URL"], "--executor-id", "2", "--cores", "1", "--app-id", APP_ID,
        "--hostname", EXECUTOR_IP, "--resourceProfileId", "0", "--podName", "d-exec-2"]
    refused = subprocess.run([*ENTRY_COMMAND, "sh"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 64 and "driver or executor, not sh" in refused.stderr


def test_the_help_names_the_default_main_file_and_its_argument():
    done = ccr("spec", "render", "spark", "--help")
    assert done.returncode == 0 and DEFAULT_MAIN_FILE in "".join(done.stdout.split())
    assert JOB_ARGS_FILE in done.stdout
