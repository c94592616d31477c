"""The CCE policy of a container group, in the structure `az confcom acipolicygen` produces.

`render_policy(group, images)` returns the exact Rego text; `policy_hash(text)` is HOST_DATA, the
SHA-256 of those bytes, which the SEV-SNP report carries and the parties' key release policies require.
The text is a pure function of the group and the image facts (digest, dm-verity layer hashes, image
config), so rendering the same spec twice gives the same bytes and the same hash.

Differences from confcom's defaults, each on purpose:
- `allow_environment_variable_dropping := false`: an environment variable no rule names refuses the
  container instead of being silently dropped (confcom drops it);
- the app's entry carries its image digest (`id`), its layers, its uid/gid (`user` by id), no
  capabilities, `no_new_privileges` and `allow_stdio_access: false`; sidecars run as uid 0 by id;
- runtime logging and stack dumps are off;
- a container a virtual node starts with values set per pod (`PodStart`: a pod IP, an executor id) gets
  those variables by `EnvPattern` rules, a name pattern and a value pattern each grouped on its own, and
  the virtual node's mounts; every other variable is measured exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..common.containers import Container, Mount
from ..room.group import ContainerGroup
from .layers import ImageInfo, ImageResolver

API_VERSION = "0.10.0"
FRAMEWORK_VERSION = "0.2.3"

#: The Confidential ACI infrastructure fragment confcom references by default (Microsoft-signed).
INFRA_FRAGMENT = {
    "feed": "mcr.microsoft.com/aci/aci-cc-infra-fragment",
    "includes": ["containers", "fragments"],
    "issuer": "did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s::eku:1.3.6.1.4.1.311.76.59.1.3",
    "minimum_svn": "1",
}

#: The pod sandbox ("pause") container every C-ACI group runs; its single layer hash as confcom lists it.
PAUSE_LAYER = "16b514057a06ad665f92c02863aca074fd5976c755d26bff16365299169e8415"

UNPRIVILEGED_CAPABILITIES = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)
PRIVILEGED_CAPABILITIES = (
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
    "CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
    "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
)

#: Variables the platform itself puts into every ACI container (confcom's defaults).
ACI_ENV_RULES = (
    ("TERM=xterm", "string"),
    ("(?i)(FABRIC)_.+=.+", "re2"),
    ("HOSTNAME=.+", "re2"),
    ("T(E)?MP=.+", "re2"),
    ("FabricPackageFileName=.+", "re2"),
    ("HostedServiceName=.+", "re2"),
    ("IDENTITY_API_VERSION=.+", "re2"),
    ("IDENTITY_HEADER=.+", "re2"),
    ("IDENTITY_SERVER_THUMBPRINT=.+", "re2"),
    ("azurecontainerinstance_restarted_by=.+", "re2"),
)
#: What podman adds when the launcher starts the app.
PODMAN_ENV_RULES = (("TERM=xterm", "string"), ("HOSTNAME=.+", "re2"), ("container=podman", "string"))

RESOLV_CONF_MOUNT = {"destination": "/etc/resolv.conf", "options": ["rbind", "rshared", "rw"],
                     "source": "sandbox:///tmp/atlas/resolvconf/.+", "type": "bind"}
EMPTY_DIR_SOURCE = "sandbox:///tmp/atlas/emptydir/.+"

#: The mounts a virtual node (AKS virtual node v2) adds to every container of a pod, as confcom lists them.
VIRTUAL_NODE_MOUNTS = tuple(
    {"destination": destination, "options": ["rbind", "rshared", mode], "source": "sandbox:///tmp/atlas/emptydir/.+",
     "type": "bind"}
    for destination, mode in (("/etc/resolv.conf", "rw"), ("/var/run/secrets/kubernetes.io/serviceaccount", "ro"),
                              ("/etc/hosts", "rw"), ("/dev/termination-log", "rw"), ("/etc/hostname", "rw")))

POLICY_FLAGS = (
    ("allow_properties_access", True),
    ("allow_dump_stacks", False),
    ("allow_runtime_logging", False),
    ("allow_environment_variable_dropping", False),
    ("allow_unencrypted_scratch", False),
    ("allow_capability_dropping", True),
)

ENFORCEMENT_POINTS = (
    "mount_device", "unmount_device", "mount_overlay", "unmount_overlay", "create_container",
    "exec_in_container", "exec_external", "shutdown_container", "signal_container_process", "plan9_mount",
    "plan9_unmount", "get_properties", "dump_stacks", "runtime_logging", "load_fragment", "scratch_mount",
    "scratch_unmount", "rw_mount_device",
)


@dataclass(frozen=True)
class PolicyOptions:
    #: reference Microsoft's signed infrastructure fragment (what confcom does by default)
    infra_fragment: bool = True


def _env_rule(pattern: str, strategy: str = "string", required: bool = False) -> dict[str, Any]:
    return {"pattern": pattern, "required": required, "strategy": strategy}


#: What a variable-name pattern may hold: name characters, the ranges A-Z a-z 0-9 and the operators that
#: repeat, group or choose; nothing that could match `=` (no `.`, no negated or other class, no escape), so
#: the name part of a rule can never reach into the value.
_NAME_PATTERN = re.compile(r"(?:[A-Za-z0-9_()\[\]{},|?*+]|A-Z|a-z|0-9)+")
_MAX_PATTERN = 500


class EnvPatternError(ValueError):
    """A variable pattern that could match more than a variable of its name and format."""


@dataclass(frozen=True)
class EnvPattern:
    """An environment variable whose value (or, for an indexed family, name) is set per pod (a pod IP, an
    executor id), measured by RE2 patterns as narrow as the value's format. Each part is a group of its own:
    the framework anchors the whole rule at both ends, and an alternation in one part must not turn into
    `^A` or `B$` for the whole rule."""

    name: str
    value: str
    required: bool = False

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > _MAX_PATTERN or not _NAME_PATTERN.fullmatch(self.name.replace(
                "A-Z", "").replace("a-z", "").replace("0-9", "") or "_"):
            raise EnvPatternError(f"env name pattern {self.name[:80]!r}: only name characters, A-Z, a-z, 0-9 "
                                  "ranges and ()[]{},|?*+ (nothing that matches '=')")
        if not self.value or len(self.value) > _MAX_PATTERN:
            raise EnvPatternError(f"env value pattern {self.value[:80]!r}: 1 to {_MAX_PATTERN} characters")
        for part in (self.name, self.value):
            try:
                re.compile(part)
            except re.error as exc:
                raise EnvPatternError(f"env pattern {part[:80]!r}: {exc}") from None

    @property
    def pattern(self) -> str:
        return f"(?:{self.name})=(?:{self.value})"

    def rule(self) -> dict[str, Any]:
        return _env_rule(self.pattern, "re2", self.required)


@dataclass(frozen=True)
class PodStart:
    """How a virtual node starts one container of a pod, beyond what the container model holds: the variables
    the orchestrator sets per pod (by pattern) and the mounts the virtual node adds."""

    env_patterns: tuple[EnvPattern, ...] = ()


def _mount_rule(mount: Mount) -> dict[str, Any]:
    options = ["rbind", "rshared" if mount.propagation == "shared" else "rprivate", mount.mode]
    return {"destination": mount.target, "options": options, "source": EMPTY_DIR_SOURCE, "type": "bind"}


def capability_sets(*, privileged: bool, added: Iterable[str] = (), drop_all: bool = False) -> dict[str, list[str]]:
    """The process's capability sets as the GCS presents them: the runtime's defaults (none when every
    capability is dropped) plus the added ones (`CAP_` names)."""
    if privileged:
        base: tuple[str, ...] = PRIVILEGED_CAPABILITIES
    elif drop_all:
        base = ()
    else:
        base = UNPRIVILEGED_CAPABILITIES
    caps = sorted(set(base) | set(added))
    return {"ambient": [], "bounding": caps, "effective": caps, "inheritable": [], "permitted": caps}


def container_capabilities(container: Container) -> dict[str, list[str]]:
    return capability_sets(privileged=container.privileged, added=container.capabilities,
                           drop_all=container.drop_all_capabilities)


def pinned_reference(container: Container, image: ImageInfo) -> str:
    if container.image_is_pinned or not image.digest:
        return container.image
    repository = container.image.rsplit(":", 1)[0] if ":" in container.image.rsplit("/", 1)[-1] else container.image
    return f"{repository}@{image.digest}"


def effective_working_dir(container: Container, image: ImageInfo) -> str:
    return container.working_dir or image.working_dir or "/"


def container_entry(container: Container, image: ImageInfo, pod_start: PodStart | None = None) -> dict[str, Any]:
    """One `containers` element, as confcom writes it (plus `id` and `name`); with `pod_start`, as a virtual
    node starts it (its per-pod variables by pattern, the virtual node's mounts)."""
    declared = dict(e.split("=", 1) for e in image.env if "=" in e)
    declared.update(container.env_dict)
    env_rules = [_env_rule(f"{k}={v}") for k, v in sorted(declared.items())]
    platform = PODMAN_ENV_RULES if container.started_by == "launcher" else ACI_ENV_RULES
    env_rules += [_env_rule(p, s) for p, s in platform if not any(r["pattern"] == p for r in env_rules)]
    mounts = [_mount_rule(m) for m in container.mounts]
    if pod_start is not None:
        env_rules += [p.rule() for p in pod_start.env_patterns]
        mounts += [dict(m, options=list(m["options"])) for m in VIRTUAL_NODE_MOUNTS]
    elif container.started_by == "platform":
        mounts.append(dict(RESOLV_CONF_MOUNT))
    uid, gid = container.user.uid, container.user.gid
    return {
        "allow_elevated": container.privileged,
        "allow_stdio_access": container.allow_stdio_access,
        "capabilities": container_capabilities(container),
        "command": list(container.command),
        "env_rules": env_rules,
        "exec_processes": [],
        "id": pinned_reference(container, image),
        "layers": list(image.layers),
        "mounts": mounts,
        "name": container.name,
        "no_new_privileges": container.no_new_privileges,
        "seccomp_profile_sha256": "",
        "signals": [],
        "user": {"group_idnames": [{"pattern": str(gid), "strategy": "id"}], "umask": "0022",
                 "user_idname": {"pattern": str(uid), "strategy": "id"}},
        "working_dir": effective_working_dir(container, image),
    }


def pause_entry() -> dict[str, Any]:
    caps = list(UNPRIVILEGED_CAPABILITIES)
    return {
        "allow_elevated": False,
        "allow_stdio_access": False,
        "capabilities": {"ambient": [], "bounding": caps, "effective": caps, "inheritable": [], "permitted": caps},
        "command": ["/pause"],
        "env_rules": [_env_rule("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", required=True),
                      _env_rule("TERM=xterm")],
        "exec_processes": [],
        "layers": [PAUSE_LAYER],
        "mounts": [],
        "name": "pause-container",
        "no_new_privileges": False,
        "seccomp_profile_sha256": "",
        "signals": [],
        "user": {"group_idnames": [{"pattern": "", "strategy": "any"}], "umask": "0022",
                 "user_idname": {"pattern": "", "strategy": "any"}},
        "working_dir": "/",
    }


def policy_containers(group: ContainerGroup, images: ImageResolver,
                      pod_starts: Mapping[str, PodStart] | None = None) -> list[dict[str, Any]]:
    starts = pod_starts or {}
    entries = [container_entry(c, images.resolve(c.image), starts.get(c.name)) for c in group.containers]
    return entries + [pause_entry()]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render_policy(group: ContainerGroup, images: ImageResolver, options: PolicyOptions = PolicyOptions(),
                  pod_starts: Mapping[str, PodStart] | None = None) -> str:
    """`pod_starts`: by container name, the containers a virtual node starts as the orchestrator sets them."""
    fragments = [INFRA_FRAGMENT] if options.infra_fragment else []
    lines = [
        "package policy",
        "",
        "import future.keywords.every",
        "import future.keywords.in",
        "",
        f'api_version := "{API_VERSION}"',
        f'framework_version := "{FRAMEWORK_VERSION}"',
        "",
        f"fragments := {json.dumps(fragments, indent=2, sort_keys=True)}",
        "",
        f"containers := {_json(policy_containers(group, images, pod_starts))}",
        "",
    ]
    lines += [f"{name} := {'true' if value else 'false'}" for name, value in POLICY_FLAGS]
    lines.append("")
    lines += [f"{point} := data.framework.{point}" for point in ENFORCEMENT_POINTS]
    lines += ["", 'reason := {"errors": data.framework.errors}', ""]
    return "\n".join(lines)


def policy_hash(policy: str) -> str:
    """HOST_DATA: SHA-256 of the exact policy bytes (what C-ACI puts in the SNP report), hex."""
    return hashlib.sha256(policy.encode()).hexdigest()


def policy_base64(policy: str) -> str:
    """`confidentialComputeProperties.ccePolicy` in the ARM template."""
    return base64.b64encode(policy.encode()).decode()
