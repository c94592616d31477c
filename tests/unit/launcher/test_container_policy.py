"""The container policy, attacked with specs that ask for what the room must not allow."""

from pathlib import Path

import pytest
import yaml

from sidecars.common.errors import PolicyDenied
from sidecars.launcher.policy import ContainerPolicy, build_launch
from sidecars.launcher.run import podman_run_args
from sidecars.room.group import render_group
from sidecars.spec import AppMount, parse_spec

DIGEST = "sha256:" + "1f" * 32
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:1", "maa_endpoint": "https://127.0.0.1:2",
             "keyvault_url": "https://127.0.0.1:3", "storage_url": "https://127.0.0.1:4/devstoreaccount1"}


def job_spec(repo, **app_changes):
    """The job example, with `app_changes` made *after* validation: `ccr spec validate` refuses every one of
    them (tests/unit/test_spec_rules.py), and the launcher's policy must refuse them even so, for a launch
    that did not come from a validated spec."""
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["application"]["image"] = f"localhost/cleanroomhello-job@{DIGEST}"
    spec = parse_spec(data, variables=VARIABLES)
    changes = {k: [AppMount(**m) for m in v] if k == "mounts" else v for k, v in app_changes.items()}
    return spec.model_copy(update={"application": spec.application.model_copy(update=changes)})


def violations(spec, local_digest=DIGEST):
    app = render_group(spec).app
    launch = build_launch(spec, app, mount_root=Path("/run/ccr/mnt"), netns="ccr-x", container_name="app")
    return ContainerPolicy(spec, app).violations(launch, local_digest), launch


def test_declared_app_is_allowed_and_runs_hardened(repo):
    found, launch = violations(job_spec(repo))
    assert found == []
    args = podman_run_args(launch)
    for flag in ("--read-only", "--cap-drop=ALL", "no-new-privileges", "--user", "1000:1000"):
        assert flag in args
    assert "/run/ccr/mnt/publisher-input:/mnt/remote/publisher-input:ro" in args
    assert "/run/ccr/mnt/consumer-output:/mnt/remote/consumer-output:rw" in args


@pytest.mark.parametrize(("change", "rule"), [
    ({"user": "0:0"}, "non_root_user"),
    ({"image": "localhost/cleanroomhello-job:latest"}, "image_pinned"),
    ({"privileged": True}, "not_privileged"),
    ({"capabilities": ["NET_ADMIN"]}, "no_added_capabilities: the app may not add CAP_NET_ADMIN"),
    ({"mounts": [{"source": "/etc", "target": "/host-etc", "mode": "ro"}]},
     "declared_mounts: /host-etc (from /etc) is not a datasource or datasink"),
    ({"mounts": [{"source": "publisher-input", "target": "/mnt/remote/publisher-input", "mode": "rw"}]},
     "mount_modes: publisher-input must be mounted ro, not rw"),
])
def test_forbidden_asks_are_denied_naming_the_rule(repo, change, rule):
    found, _ = violations(job_spec(repo, **change))
    assert any(v.startswith(rule) for v in found), found


def test_image_whose_local_digest_differs_is_denied(repo):
    found, _ = violations(job_spec(repo), local_digest="sha256:" + "00" * 32)
    assert found == [f"image_digest: the local image is sha256:{'00' * 32}, the spec pins {DIGEST}"]


def test_tampered_launch_is_denied(repo):
    spec = job_spec(repo)
    app = render_group(spec).app
    launch = build_launch(spec, app, mount_root=Path("/m"), netns=None, container_name="app")
    policy = ContainerPolicy(spec, app)
    from dataclasses import replace

    sneaky = replace(launch, env=launch.env + (("LD_PRELOAD", "/tmp/x.so"),), read_only_rootfs=False,
                     command=("sh", "-c", "curl evil"))
    with pytest.raises(PolicyDenied) as info:
        policy.check(sneaky, DIGEST)
    message = str(info.value)
    for rule in ("env_declared", "read_only_rootfs", "command_declared"):
        assert rule in message
