"""`ccr spec render spark`: a spec's cluster as a Kubeflow Spark Operator `SparkApplication` on AKS virtual
nodes, where every driver and executor pod is its own Confidential ACI container group.

Two container groups are rendered from the one model every rendering shares (`room.group.render_group`):
- the driver: the room the spec describes, with its app as the Spark container Spark's Kubernetes backend
  starts (sparkpod.py: spark-submit's arguments, Spark's variables and mounts), so its HOST_DATA is not
  `ccr spec render policy-hash SPEC` (the app as the launcher starts it) and is what the parties' key release
  policies must name;
- the executor: the same spec with the cluster's executor image as the app (in Spark's form too), its
  executor resources, no volume, sink, endpoint or API (an executor holds no party's key), and the driver
  spec's sha256 in the app's environment, so HOST_DATA_exec is bound to the driver spec it serves (as the
  local cluster's `executor_policy` is).
Each pod carries its group's policy in the virtual node's `ccepolicy` annotation and its group's init
container and sidecars, as the AKS pod rendering (k8s.py) writes them.

The cluster's Spark secret (`spark.authenticate`) is in no field of the rendering: Spark reads it from a file
in the room's own `ccr-run` volume (`spark.authenticate.secret.file`, which also keeps Spark on Kubernetes
from putting a generated one into the executor pods' environment, where anyone who may read pods sees it).
The driver room makes it; an executor room receives it from the driver's admission service only after its
attestation shows HOST_DATA_exec, wrapped to a key its report binds (cluster/admission.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from dataclasses import dataclass, replace
from typing import Any

from ..cluster.admission import AdmissionPolicy
from ..cluster.ports import ADMISSION_PORT, BLOCK_MANAGER_PORT, DRIVER_PORT
from ..cluster.sparkconf import DAEMON_CONF, SECURITY_CONF
from ..common.containers import (
    DEFAULT_IMAGE_VERSION,
    DEFAULT_REGISTRY,
    RUN_ROOT,
    VOLUME_REMOTE,
    VOLUME_RUN,
    Container,
    Mount,
)
from ..common.errors import ConfigError
from ..room.group import ContainerGroup, canonical_spec_json, render_group
from ..spec import Application, CleanRoomSpec, Cluster, Telemetry
from .arm import check_limits
from .cce import PodStart, PolicyOptions, policy_base64, render_policy
from .k8s import CCE_POLICY_ANNOTATION, pod_container
from .layers import ImageResolver
from .render import Rendering, default_images
from .sparkcrd import API_VERSION, KIND, check_spark_application
from .sparkpod import ENTRY_COMMAND, LOCAL_DIR, PYTHON, SPARK_CONTAINER, SparkStart, spark_start

#: Virtual nodes on Azure Container Instances (the AKS virtual node v2, the one that runs a pod as a
#: Confidential ACI group when it carries the `ccepolicy` annotation): its node label and taint.
VIRTUAL_NODE_SELECTOR = {"virtualization": "virtualnode2", "kubernetes.io/os": "linux"}
VIRTUAL_NODE_TOLERATIONS = ({"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"},)

#: where each room's Spark finds the cluster's secret (written by the room, never by the deployer)
SECRET_FILE = f"{RUN_ROOT}/cluster/spark-authenticate.secret"
#: in the executor app's (measured) environment: the driver spec an executor room serves
DRIVER_SPEC_ENV = "CCR_CLUSTER_DRIVER_SPEC_SHA256"
#: the driver program in the ccr-analytics image: sidecars/cluster/job.py run as a file (sparkjob.py; Spark
#: runs the main file as a script, where job.py's relative imports fail)
DEFAULT_MAIN_FILE = "local:///opt/ccr/lib/python3.11/site-packages/sidecars/renderings/sparkjob.py"
#: job.py's one argument: its run's arguments (views, query, sink), written by the driver room into its own
#: volume like the secret file, never by the deployer
JOB_ARGS_FILE = f"{RUN_ROOT}/cluster/job-args.json"
#: the service account the operator's Helm chart makes for Spark drivers (release name spark-operator)
DEFAULT_SERVICE_ACCOUNT = "spark-operator-spark"
EXECUTOR_APP_NAME = "ccr-spark-executor"
#: Spark's minimum JVM memory overhead per pod (spark.{driver,executor}.memoryOverhead default floor)
MIN_OVERHEAD_MB = 384


#: what Spark takes as its main file: a URI of a scheme it reads, no whitespace or control character
MAIN_FILE = re.compile(r"(local|file|https?|s3a|abfss?|wasbs?)://[^\s\x00-\x1f\x7f]{1,1000}")
#: a Kubernetes object name (DNS-1123 subdomain)
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class NoCluster(ConfigError):
    """The spec has no `cluster` section: there is no Spark cluster to render."""


@dataclass(frozen=True)
class ClusterRendering:
    spec: CleanRoomSpec
    driver: Rendering
    executor: Rendering
    #: what Spark's Kubernetes backend adds to each role's container (the policies measure it)
    driver_start: SparkStart
    executor_start: SparkStart
    #: the driver program: Spark puts it in the driver container's arguments, so the driver policy measures it
    main_file: str = DEFAULT_MAIN_FILE

    @property
    def cluster(self) -> Cluster:
        assert self.spec.cluster is not None
        return self.spec.cluster

    @property
    def admission_policy(self) -> AdmissionPolicy:
        """What the driver's admission service is given as accepted: the executor pods' HOST_DATA."""
        return AdmissionPolicy(executor_host_data=self.executor.host_data)


def driver_spec_sha256(spec: CleanRoomSpec) -> str:
    return hashlib.sha256(canonical_spec_json(spec).encode()).hexdigest()


def executor_spec(spec: CleanRoomSpec) -> CleanRoomSpec:
    """The room an executor pod is: the driver spec's contract and trust, the cluster's executor image."""
    if spec.cluster is None:
        raise NoCluster(f"spec {spec.name} has no cluster section: nothing to render for Spark "
                        "(add cluster: {executors, executor_image, executor_resources}, docs/analytics.md)")
    cluster = spec.cluster
    name = f"{spec.name[:57].rstrip('-')}-exec"
    app = Application.model_validate({
        "name": EXECUTOR_APP_NAME, "image": cluster.executor_image,
        "resources": cluster.executor_resources.model_dump(),
        "env": {DRIVER_SPEC_ENV: driver_spec_sha256(spec)},
        # the executor JVM's RPC and block manager (as the driver's, spec.application.loopback_tcp)
        "loopback_tcp": True,
    })
    return spec.model_copy(update={"name": name, "application": app, "datasources": [], "datasinks": [],
                                   "endpoints": [], "telemetry": Telemetry(), "cluster": None})


def _render_pod(spec: CleanRoomSpec, start: SparkStart, images: ImageResolver, *, registry: str, version: str,
                options: PolicyOptions) -> Rendering:
    """A role's group with its app as the Spark container the operator's pod runs, and its policy."""
    group = render_group(spec, registry=registry, version=version)
    spark = spark_container(group.app, start)
    group = replace(group, containers=tuple(spark if c.role == "app" else c for c in group.containers))
    prefetch = getattr(images, "prefetch", None)
    if prefetch is not None:
        prefetch([c.image for c in group.containers])
    policy = render_policy(group, images, options, {spark.name: PodStart(env_patterns=start.env_patterns)})
    return Rendering(group=group, policy=policy)


def spark_container(app: Container, start: SparkStart) -> Container:
    """The app as Spark's Kubernetes backend starts it: the pod template's command and Spark's arguments,
    the app's environment and Spark's fixed variables, the app's mounts, the run volume and Spark's own."""
    return replace(app, command=start.command, env=(*app.env, *start.env), started_by="platform",
                   mounts=(*app.mounts, Mount(target=RUN_ROOT, volume=VOLUME_RUN, mode="ro"), *start.mounts))


def render_cluster(spec: CleanRoomSpec, images: ImageResolver | None = None, *, registry: str = DEFAULT_REGISTRY,
                   version: str = DEFAULT_IMAGE_VERSION, options: PolicyOptions = PolicyOptions(),
                   main_file: str = DEFAULT_MAIN_FILE) -> ClusterRendering:
    executor = executor_spec(spec)  # first: a spec without a cluster is refused before any image is read
    cluster = spec.cluster
    assert cluster is not None
    images = images or default_images()
    conf = spark_conf(cluster)
    driver_start = spark_start("driver", conf, main_file=main_file, arguments=(JOB_ARGS_FILE,))
    executor_start = spark_start("executor", conf, cores=executor_cores(cluster),
                                 heap_mb=cluster.executor_memory_mb)
    common = {"registry": registry, "version": version, "options": options}
    return ClusterRendering(spec=spec, main_file=main_file, driver_start=driver_start, executor_start=executor_start,
                            driver=_render_pod(spec, driver_start, images, **common),
                            executor=_render_pod(executor, executor_start, images, **common))


def executor_cores(cluster: Cluster) -> int:
    """Spark's executor cores (spark.executor.cores, SPARK_EXECUTOR_CORES): the executor room's whole CPUs."""
    return max(1, int(cluster.executor_resources.cpu))


def check_deploy_names(main_file: str, service_account: str) -> None:
    """The command line's values, before they go into the SparkApplication."""
    if not MAIN_FILE.fullmatch(main_file):
        raise ConfigError(f"--main-file {main_file[:80]!r}: a URI (local://, https://, s3a://, abfss://, ...) of at "
                          "most 1000 characters, without spaces")
    if len(service_account) > 253 or not OBJECT_NAME.fullmatch(service_account):
        raise ConfigError(f"--service-account {service_account[:80]!r}: a Kubernetes name (lower-case letters, "
                          "digits, '-' and '.', at most 253 characters)")


def spark_conf(cluster: Cluster) -> dict[str, str]:
    """Authenticated and encrypted RPC, encrypted shuffle and spill files (the local cluster's settings),
    the secret from its file, fixed ports, and exactly `executors` executors."""
    return {
        **DAEMON_CONF,
        **SECURITY_CONF,
        "spark.authenticate.secret.file": SECRET_FILE,
        "spark.driver.port": str(DRIVER_PORT),
        "spark.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.port.maxRetries": "0",
        # one attested group per executor: Spark must not add or replace executors the members did not count
        "spark.dynamicAllocation.enabled": "false",
        "spark.executor.instances": str(cluster.executors),
        "spark.kubernetes.allocation.maxPendingPods": str(cluster.executors),
        # what Spark's Kubernetes backend would otherwise take from spark-submit's environment or make up per
        # run (a local dir named by a random UUID, the operator's PYSPARK_PYTHON), fixed so the policy names it
        "spark.local.dir": LOCAL_DIR,
        "spark.pyspark.python": PYTHON,
        "spark.pyspark.driver.python": PYTHON,
        "spark.executor.cores": str(executor_cores(cluster)),
        # executors get their settings from the driver; no config map volume the policy would have to name
        "spark.kubernetes.executor.disableConfigMap": "true",
    }


def _mounts(app: Container, start: SparkStart) -> list[dict[str, Any]]:
    """The section's mounts for the Spark container: the app's volumes (each a sub-path of the FUSE mounts'
    volume, as the launcher mounts them) and the room's run volume, read-only, for the secret file; not the
    ones Spark adds itself (its config map, its local dir)."""
    mounts: list[dict[str, Any]] = []
    for m in app.mounts:
        if m in start.mounts:
            continue
        mount: dict[str, Any] = {"name": m.volume, "mountPath": m.target, "readOnly": m.read_only}
        if m.volume == VOLUME_REMOTE:
            mount.update(subPath=m.source, mountPropagation="HostToContainer")
        mounts.append(mount)
    return mounts


def _memory(room_mb: int, heap_mb: int) -> dict[str, str]:
    return {"memory": f"{heap_mb}m", "memoryOverhead": f"{room_mb - heap_mb}m"}


def _check_executor_limits(group: ContainerGroup) -> None:
    """The limits of a Confidential ACI group, naming the spec field an executor room's size comes from."""
    try:
        check_limits(group)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("application.resources", "cluster.executor_resources")) from None


def _pod(group: ContainerGroup, policy: str, start: SparkStart) -> dict[str, Any]:
    """What the driver and executor sections share: the image and size Spark gives the pod, the group's policy
    (Spark copies the section's annotations onto the pod) and the pod template."""
    check_limits(group)
    cpu = group.app.resources.cpu
    return {
        "image": group.app.image,
        "cores": max(1, int(cpu)),
        "coreRequest": f"{int(cpu * 1000)}m",
        "coreLimit": f"{int(cpu * 1000)}m",
        "annotations": {CCE_POLICY_ANNOTATION: policy_base64(policy)},
        "labels": {"ccr-cleanroom": group.name},
        "template": pod_template(group, start),
    }


def pod_template(group: ContainerGroup, start: SparkStart) -> dict[str, Any]:
    """The role's pod as Spark starts from it (spark.kubernetes.*.podTemplateFile, which the operator writes
    from the section's `template`): the Spark container with the command the policy measures (the
    ccr-analytics image has no Spark entrypoint), the app's environment and mounts and its confinement; the
    group's init container and sidecars, volumes and placement. With a template the operator's webhook leaves
    the pod alone, so what is here is what the pod is, with what Spark adds (sparkpod.py)."""
    app = group.app
    spark: dict[str, Any] = {
        "name": SPARK_CONTAINER[start.role],
        "command": list(ENTRY_COMMAND),
        # the app's environment; Spark sets its own variables itself
        "env": [{"name": k, "value": v} for k, v in app.env if (k, v) not in start.env],
        "volumeMounts": _mounts(app, start),
        "securityContext": {"runAsUser": app.user.uid, "runAsGroup": app.user.gid, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if start.role == "driver":
        spark["ports"] = [{"name": "ccr-admission", "containerPort": ADMISSION_PORT, "protocol": "TCP"}]
    platform = [c for c in group.platform_containers if c.role != "app"]
    return {"spec": {
        # no other service's link variables in the containers' environment: the policy could not name them
        "enableServiceLinks": False,
        # only the driver talks to the Kubernetes API (it creates the executor pods)
        "automountServiceAccountToken": start.role == "driver",
        "containers": [spark, *(pod_container(c, init=False) for c in platform if c.role != "init")],
        "initContainers": [pod_container(c, init=True) for c in platform if c.role == "init"],
        "volumes": [{"name": v, "emptyDir": {}} for v in group.volumes],
        "nodeSelector": dict(VIRTUAL_NODE_SELECTOR),
        "tolerations": [dict(t) for t in VIRTUAL_NODE_TOLERATIONS],
    }}


def spark_version() -> str:
    """The Spark the images carry: the pyspark ccr is built with (its wheel is Spark itself)."""
    return importlib.metadata.version("pyspark")


def spark_application(rendering: ClusterRendering, *, service_account: str = DEFAULT_SERVICE_ACCOUNT) -> dict[str, Any]:
    """The SparkApplication, checked against the operator's CRD before it is returned."""
    cluster, driver, executor = rendering.cluster, rendering.driver, rendering.executor
    _check_executor_limits(executor.group)
    room_mb = int(driver.group.app.resources.memory_gb * 1024)
    driver_heap = max(room_mb - MIN_OVERHEAD_MB, room_mb // 2)
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": rendering.spec.name, "labels": {"ccr-cleanroom": rendering.spec.name}},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": driver.group.app.image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": rendering.main_file,
            "arguments": [JOB_ARGS_FILE],
            "sparkVersion": spark_version(),
            "restartPolicy": {"type": "Never"},
            "sparkConf": spark_conf(cluster),
            "dynamicAllocation": {"enabled": False},
            "driver": {**_pod(driver.group, driver.policy, rendering.driver_start), **_memory(room_mb, driver_heap),
                       "serviceAccount": service_account},
            "executor": {**_pod(executor.group, executor.policy, rendering.executor_start),
                         **_memory(int(cluster.executor_resources.memory_gb * 1024), cluster.executor_memory_mb),
                         "instances": cluster.executors, "deleteOnTermination": True},
        },
    }
    check_spark_application(document)
    return document
