"""The Spark container as Spark's Kubernetes backend starts it in a driver or executor pod, for its CCE policy.

What Spark 4 sets (resource-managers/kubernetes/core/.../deploy/k8s/, read from its source):
- arguments: the driver `driver --properties-file /opt/spark/conf/spark.properties --class
  org.apache.spark.deploy.PythonRunner MAIN_FILE ARGS...` (features/DriverCommandFeatureStep.scala), the
  executor `executor` (features/BasicExecutorFeatureStep.scala); the container's command is the image's
  entrypoint, here the pod template's (the ccr-analytics image has none: `ENTRY_COMMAND` below does what
  Spark's own images' entrypoint.sh does for the two roles);
- environment, fixed values: SPARK_CONF_DIR=/opt/spark/conf (submit/Client.scala, BasicExecutorFeatureStep),
  SPARK_LOCAL_DIRS (features/LocalDirsFeatureStep.scala; `spark.local.dir` makes it fixed), PYSPARK_PYTHON and
  PYSPARK_DRIVER_PYTHON (DriverCommandFeatureStep; `spark.pyspark.*python` make them fixed instead of read
  from spark-submit's environment), SPARK_EXECUTOR_CORES, SPARK_EXECUTOR_MEMORY, SPARK_RESOURCE_PROFILE_ID;
- environment, per pod (by pattern, each as narrow as its value's format): SPARK_APPLICATION_ID
  (`spark-` and a UUID's 32 hex digits, KubernetesConf.getKubernetesAppId), SPARK_DRIVER_BIND_ADDRESS and
  SPARK_EXECUTOR_POD_IP (the pod's IPv4 address), SPARK_EXECUTOR_ID (a positive integer),
  SPARK_EXECUTOR_POD_NAME (`NAME-exec-ID`), the host of SPARK_DRIVER_URL (`NAME-driver-svc.NAMESPACE.svc`),
  SPARK_USER (the user spark-submit runs as in the operator's pod), SPARK_JAVA_OPT_<i> (the driver's executor
  start-up settings, `-Dkey=value`, numbered in a hash map's order: each index may hold any one of them,
  never another);
- the Kubernetes master service's variables every container gets (KUBERNETES_SERVICE_HOST, ...): a name
  pattern and an address, port or protocol value; the pod templates turn service links off, so no other
  service's variables come (one that did would refuse the container);
- mounts: the driver's config maps at /opt/spark/conf (submit/Client.scala) and of the executors' pod
  template at /opt/spark/pod-template (features/PodTemplateConfigMapStep.scala), each role's local dir
  (LocalDirsFeatureStep), and the virtual node's own (resolv.conf, hosts, hostname, the service account
  token, termination log).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..cluster.ports import DRIVER_PORT
from ..common.containers import Mount
from .cce import EnvPattern

Role = Literal["driver", "executor"]

#: Constants.scala: the containers Spark names, its config directory and properties file
SPARK_CONTAINER: Mapping[Role, str] = {"driver": "spark-kubernetes-driver", "executor": "spark-kubernetes-executor"}
SPARK_CONF_DIR = "/opt/spark/conf"
SPARK_CONF_PATH = f"{SPARK_CONF_DIR}/spark.properties"
SPARK_CONF_VOLUME_DRIVER = "spark-conf-volume-driver"
#: features/PodTemplateConfigMapStep.scala: with an executor pod template, the driver gets it in a config map
EXECUTOR_TEMPLATE_DIR = "/opt/spark/pod-template"
EXECUTOR_TEMPLATE_VOLUME = "pod-template-volume"
PYTHON_RUNNER = "org.apache.spark.deploy.PythonRunner"
#: spark.local.dir, so SPARK_LOCAL_DIRS and its volume (spark-local-dir-1) are the same in every pod
LOCAL_DIR = "/var/data/spark-local"
LOCAL_DIR_VOLUME = "spark-local-dir-1"
#: the ccr-analytics image's Python (its PYSPARK_PYTHON)
PYTHON = "/opt/ccr/bin/python"
#: the default resource profile's id (ResourceProfile.DEFAULT_RESOURCE_PROFILE_ID)
DEFAULT_RESOURCE_PROFILE = "0"

#: What Spark's images' entrypoint.sh does for `driver` and `executor`, for an image without it: the driver
#: is spark-submit in client mode bound to the pod's address, an executor the JVM of
#: KubernetesExecutorBackend with the driver's start-up settings (SPARK_JAVA_OPT_<i>, in index order).
ENTRY_SCRIPT = r"""set -eu
role=$1
shift
case "$role" in
driver)
  exec "$SPARK_HOME/bin/spark-submit" --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS" \
    --deploy-mode client "$@" ;;
executor)
  opts=()
  for name in $(compgen -v SPARK_JAVA_OPT_ | sort -t_ -k4 -n); do opts+=("${!name}"); done
  exec "$JAVA_HOME/bin/java" "${opts[@]}" -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
    -cp "$SPARK_CONF_DIR:$SPARK_HOME/jars/*" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
    --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
    --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" --podName "$SPARK_EXECUTOR_POD_NAME" ;;
*)
  echo "ccr-spark: the first argument is driver or executor, not $role" >&2
  exit 64 ;;
esac
"""
ENTRY_COMMAND = ("/bin/bash", "-c", ENTRY_SCRIPT, "ccr-spark")

_IPV4 = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
_PORT = r"[1-9][0-9]{0,4}"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_APP_ID = r"spark-[0-9a-f]{32}"
#: a POSIX user name (what Utils.getCurrentUserName gives for spark-submit's user)
_USER = r"[a-z_][a-z0-9_-]{0,31}"

#: The Kubernetes master service's variables (kubelet: every container gets them, service links or not).
KUBERNETES_SERVICE_PATTERNS = (
    EnvPattern("KUBERNETES_SERVICE_HOST", _IPV4),
    EnvPattern("KUBERNETES_SERVICE_PORT(_HTTPS)?", _PORT),
    EnvPattern("KUBERNETES_PORT", f"tcp://{_IPV4}:{_PORT}"),
    EnvPattern("KUBERNETES_PORT_[0-9]{1,5}_TCP", f"tcp://{_IPV4}:{_PORT}"),
    EnvPattern("KUBERNETES_PORT_[0-9]{1,5}_TCP_PROTO", "tcp"),
    EnvPattern("KUBERNETES_PORT_[0-9]{1,5}_TCP_PORT", _PORT),
    EnvPattern("KUBERNETES_PORT_[0-9]{1,5}_TCP_ADDR", _IPV4),
)


@dataclass(frozen=True)
class SparkStart:
    """What Spark adds to a role's container: its command line, fixed variables, per-pod variables by
    pattern and its own mounts."""

    role: Role
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    env_patterns: tuple[EnvPattern, ...]
    mounts: tuple[Mount, ...]


def is_executor_startup_conf(key: str) -> bool:
    """SparkConf.isExecutorStartupConf: what the driver hands executors as JVM options (SPARK_JAVA_OPT_<i>)."""
    return ((key.startswith("spark.auth") and key != "spark.authenticate.secret") or key.startswith("spark.rpc")
            or key.startswith("spark.network") or (key.startswith("spark.ssl") and "Password" not in key)
            or (key.startswith("spark.") and key.endswith(".port")) or key.startswith("spark.port."))


def java_opt_patterns(conf: Mapping[str, str]) -> tuple[EnvPattern, ...]:
    """One rule per index: each SPARK_JAVA_OPT_<i> holds one of the start-up settings, exactly."""
    options = sorted(f"-D{k}={v}" for k, v in conf.items() if is_executor_startup_conf(k))
    # re.escape escapes only punctuation, which RE2 reads as the literal character too
    choice = "|".join(re.escape(o) for o in options)
    return tuple(EnvPattern(f"SPARK_JAVA_OPT_{i}", choice, required=True) for i in range(len(options)))


def spark_start(role: Role, conf: Mapping[str, str], *, main_file: str = "", arguments: tuple[str, ...] = (),
                cores: int = 1, heap_mb: int = 0) -> SparkStart:
    common_env = (("SPARK_CONF_DIR", SPARK_CONF_DIR), ("SPARK_LOCAL_DIRS", LOCAL_DIR))
    common_patterns = (EnvPattern("SPARK_USER", _USER, required=True),
                       EnvPattern("SPARK_APPLICATION_ID", _APP_ID, required=True), *KUBERNETES_SERVICE_PATTERNS)
    local_dir = Mount(target=LOCAL_DIR, volume=LOCAL_DIR_VOLUME, mode="rw")
    if role == "driver":
        return SparkStart(
            role=role,
            command=(*ENTRY_COMMAND, "driver", "--properties-file", SPARK_CONF_PATH, "--class", PYTHON_RUNNER,
                     main_file, *arguments),
            env=(*common_env, ("PYSPARK_PYTHON", PYTHON), ("PYSPARK_DRIVER_PYTHON", PYTHON)),
            env_patterns=(*common_patterns, EnvPattern("SPARK_DRIVER_BIND_ADDRESS", _IPV4, required=True)),
            mounts=(Mount(target=SPARK_CONF_DIR, volume=SPARK_CONF_VOLUME_DRIVER, mode="rw"),
                    Mount(target=EXECUTOR_TEMPLATE_DIR, volume=EXECUTOR_TEMPLATE_VOLUME, mode="rw"), local_dir))
    return SparkStart(
        role=role,
        command=(*ENTRY_COMMAND, "executor"),
        env=(*common_env, ("SPARK_EXECUTOR_CORES", str(cores)), ("SPARK_EXECUTOR_MEMORY", f"{heap_mb}m"),
             ("SPARK_RESOURCE_PROFILE_ID", DEFAULT_RESOURCE_PROFILE)),
        env_patterns=(
            *common_patterns,
            # the driver service (DriverServiceFeatureStep): a DNS label ending in -driver-svc, in the namespace
            EnvPattern("SPARK_DRIVER_URL",
                       rf"spark://CoarseGrainedScheduler@[a-z0-9][-a-z0-9]{{0,52}}-driver-svc\.{_DNS_LABEL}\.svc:"
                       f"{DRIVER_PORT}", required=True),
            EnvPattern("SPARK_EXECUTOR_ID", "[1-9][0-9]{0,8}", required=True),
            EnvPattern("SPARK_EXECUTOR_POD_IP", _IPV4, required=True),
            # <resource name prefix>-exec-<executor id>, a pod name (at most 253 characters)
            EnvPattern("SPARK_EXECUTOR_POD_NAME", "[a-z0-9][-a-z0-9]{0,230}-exec-[1-9][0-9]{0,8}", required=True),
            *java_opt_patterns(conf)),
        mounts=(local_dir,))
