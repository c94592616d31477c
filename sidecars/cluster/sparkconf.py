"""The Spark settings every room of a cluster runs with, and the properties files that carry the secret.

The reference sets none of the three: here RPC between rooms is authenticated (`spark.authenticate`, the
cluster's shared secret, released only to attested executor rooms) and encrypted (AES-GCM,
`spark.network.crypto.enabled`: also block transfers), and shuffle and spill files are encrypted
(`spark.io.encryption.enabled`). The secret never appears on a command line (visible in /proc to every
process): it is in a 0600 properties file in the room's own state folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .ports import BLOCK_MANAGER_PORT, DRIVER_PORT

#: what the cluster's protection rests on; the plain configuration (bench) turns exactly these off
SECURITY_CONF: Mapping[str, str] = {
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.network.crypto.saslFallback": "false",
    "spark.io.encryption.enabled": "true",
    "spark.authenticate.enableSaslEncryption": "false",
}

#: every room, whatever the configuration
DAEMON_CONF: Mapping[str, str] = {
    "spark.master.rest.enabled": "false",
    "spark.ui.enabled": "false",
    "spark.ui.killEnabled": "false",
    "spark.shuffle.service.enabled": "false",
}


def driver_conf(driver_address: str, scratch: Path, *, secure: bool = True) -> dict[str, str]:
    """The driver application's settings (SparkSession builder)."""
    conf = {
        **DAEMON_CONF,
        "spark.driver.host": driver_address,
        "spark.driver.bindAddress": driver_address,
        "spark.driver.port": str(DRIVER_PORT),
        "spark.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.port.maxRetries": "0",  # another port would be closed by the firewall: fail instead
        "spark.executor.memory": "512m",
        "spark.executor.cores": "1",
        "spark.cores.max": "64",
        "spark.local.dir": str(scratch),
        "spark.sql.shuffle.partitions": "4",
        "spark.task.maxFailures": "4",
        "spark.excludeOnFailure.enabled": "false",
    }
    if secure:
        conf.update(SECURITY_CONF)
    return conf


def write_properties(path: Path, settings: Mapping[str, str], secret: bytes | None) -> Path:
    """A properties file readable only by its owner, with the secret when there is one."""
    lines = [f"{key} {value}" for key, value in settings.items()]
    if secret is not None:
        lines.append(f"spark.authenticate.secret {secret.hex()}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def daemon_settings(secure: bool, *, local_dir: Path | None = None) -> dict[str, str]:
    settings = {**DAEMON_CONF, "spark.port.maxRetries": "0",
                "spark.blockManager.port": str(BLOCK_MANAGER_PORT)}
    if secure:
        settings.update(SECURITY_CONF)
    if local_dir is not None:
        settings["spark.local.dir"] = str(local_dir)
    return settings
