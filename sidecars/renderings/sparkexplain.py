"""`ccr spec render spark --explain`: in plain words, which HOST_DATA each role of the cluster attests with,
what the members accept, and which secrets each role can obtain, read from the same rendering that writes
the SparkApplication; then the driver room as `ccr spec explain` tells it."""

from __future__ import annotations

from .explain import explain as explain_room
from .spark import SECRET_FILE, ClusterRendering, driver_spec_sha256


def explain_cluster(rendering: ClusterRendering, *, mock_platform: bool = False) -> str:
    spec, cluster = rendering.spec, rendering.cluster
    driver, executor = rendering.driver.host_data, rendering.executor.host_data
    out = [
        f"Spark cluster {spec.name}: 1 driver pod and {cluster.executors} executor pods (SparkApplication "
        f"{spec.name}), each pod its own Confidential ACI container group on an AKS virtual node",
        f"  driver pod: attests with HOST_DATA {driver}",
        "    (the room this spec describes, with its app as the Spark container the operator starts: the driver",
        f"    program {rendering.main_file} in spark-submit's",
        "    arguments, Spark's variables and mounts; the parties' key release policies must name this HOST_DATA)",
        f"  executor pods ({cluster.executors}, image {cluster.executor_image}): each attests with HOST_DATA "
        f"{executor}",
        f"    (the executor room: bound to this driver spec, sha256 {driver_spec_sha256(spec)})",
        "",
        "What the members accept:",
        f"  - the driver policy {driver}: the parties' key release policies name it (below)",
        f"  - the executor policy {executor}: the driver's admission service gives the cluster's secret only to",
        "    an executor pod whose attestation shows it, not debuggable, with the key the secret is wrapped to",
        "    bound in its report; any other is refused and audited",
        f"  - {cluster.executors} executors of {cluster.executor_resources.cpu:g} CPU and "
        f"{cluster.executor_resources.memory_gb:g} GB (JVM heap {cluster.executor_memory_mb} MiB), no dynamic "
        "allocation",
        "  - Spark RPC and block transfers authenticated with the cluster's secret (no SASL fallback) and",
        "    AES-GCM encrypted; shuffle and spill files encrypted",
        "",
        "Which secrets each role can obtain:",
        "  - driver: the parties' keys listed below, released to the driver policy's HOST_DATA only; it makes",
        "    the cluster's Spark secret inside its own room",
        "  - executors: the cluster's Spark secret only, from the driver's admission service after attestation,",
        "    wrapped to their own attested key; no party's key (no release policy names their HOST_DATA), no",
        "    volume, no API endpoint, no sidecar API",
        "  - whoever deploys: none; the SparkApplication holds no secret (each room's Spark reads it from",
        f"    {SECRET_FILE}, in the room's own volume)",
        "",
        "The driver room:",
    ]
    return "\n".join(out) + "\n" + explain_room(spec, rendering.driver, mock_platform=mock_platform)
