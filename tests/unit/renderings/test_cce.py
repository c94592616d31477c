"""The generated CCE policy, evaluated with the real OPA engine at the framework's enforcement points:
the declared group starts; any altered container is refused."""

from __future__ import annotations

import copy
import hashlib

import pytest

from sidecars.common.errors import PolicyDenied
from sidecars.common.rego import RegoEngine
from sidecars.renderings.cce import PAUSE_LAYER, PolicyOptions, policy_hash, render_policy
from sidecars.renderings.enforcer import GuestRequests, PolicyEnforcer
from sidecars.room.group import render_group

from .conftest import fake_layer, images_for


@pytest.fixture
def policy(job_group, job_images) -> str:
    return render_policy(job_group, job_images)


@pytest.fixture
def enforcer(policy):
    enforcer = PolicyEnforcer(policy)
    yield enforcer
    enforcer.close()


def requests_for(group, images, name):
    container = group.container(name)
    return GuestRequests.for_container(container, images.resolve(container.image), f"{name}-c0ffee")


def test_policy_has_the_confcom_structure(policy, job_group, job_images):
    engine = RegoEngine().add_policy("policy.rego", policy)
    assert engine.evaluate("policy.api_version") == "0.10.0"
    assert engine.evaluate("policy.framework_version") == "0.2.3"
    assert engine.evaluate("policy.fragments")[0]["feed"] == "mcr.microsoft.com/aci/aci-cc-infra-fragment"
    assert engine.evaluate("policy.allow_environment_variable_dropping") is False
    containers = engine.evaluate("policy.containers")
    assert [c["name"] for c in containers] == [c.name for c in job_group.containers] + ["pause-container"]
    required = {"id", "layers", "command", "env_rules", "mounts", "allow_elevated", "working_dir", "user",
                "capabilities", "no_new_privileges", "exec_processes", "signals", "allow_stdio_access",
                "seccomp_profile_sha256"}
    assert all(required <= set(c) for c in containers[:-1])
    assert containers[-1]["layers"] == [PAUSE_LAYER]
    for point in ("mount_device", "mount_overlay", "create_container", "exec_in_container", "load_fragment"):
        assert f"{point} := data.framework.{point}" in policy


def test_the_app_is_measured_by_digest_and_layers(policy, job_group, job_images):
    app = RegoEngine().add_policy("policy.rego", policy).evaluate("policy.containers")[-2]
    image = job_images.resolve(job_group.app.image)
    assert app["id"] == job_group.app.image and image.digest.split(":")[1] not in ("", None)
    assert app["layers"] == list(image.layers)
    assert app["user"]["user_idname"] == {"pattern": "1000", "strategy": "id"}
    assert app["capabilities"]["bounding"] == [] and app["no_new_privileges"] is True
    assert app["allow_stdio_access"] is False


def test_unpinned_sidecar_images_are_pinned_to_their_digest_in_the_policy(policy, job_images):
    containers = RegoEngine().add_policy("policy.rego", policy).evaluate("policy.containers")
    skr = next(c for c in containers if c["name"] == "ccr-skr")
    assert skr["id"] == "localhost/ccr/ccr-runtime@" + job_images.resolve("localhost/ccr/ccr-runtime:0.1.0").digest


def test_policy_bytes_and_hash_are_deterministic(job_spec, job_group, job_images, policy):
    again = render_policy(render_group(job_spec), images_for(render_group(job_spec)))
    assert again == policy
    assert policy_hash(policy) == hashlib.sha256(policy.encode()).hexdigest()
    assert policy_hash(render_policy(job_group, job_images, PolicyOptions(infra_fragment=False))) != policy_hash(policy)


def test_every_declared_container_starts(job_group, job_images, enforcer):
    for container in job_group.containers:
        decision = requests_for(job_group, job_images, container.name).start(enforcer)
        assert decision.allowed
        assert decision.result["allow_stdio_access"] is container.allow_stdio_access


def test_the_same_container_cannot_be_created_twice(job_group, job_images, enforcer):
    requests_for(job_group, job_images, "hello-job").start(enforcer)
    with pytest.raises(PolicyDenied, match="container already started"):
        enforcer.enforce("create_container", requests_for(job_group, job_images, "hello-job").create)


def attack(job_group, job_images, enforcer, name, mutate, reason):
    request = requests_for(job_group, job_images, name)
    mutate(request)
    with pytest.raises(PolicyDenied, match=reason):
        request.start(enforcer)


def test_different_command_is_denied(job_group, job_images, enforcer):
    attack(job_group, job_images, enforcer, "hello-job",
           lambda r: r.create.update(argList=["python3", "/app/exfiltrate.py"]), "invalid command")


def test_extra_env_var_is_denied(job_group, job_images, enforcer):
    attack(job_group, job_images, enforcer, "hello-job",
           lambda r: r.create["envList"].append("LD_PRELOAD=/tmp/evil.so"), "invalid env list")


def test_changed_measured_sidecar_configuration_is_denied(job_group, job_images, enforcer):
    def tamper(r):
        r.create["envList"] = [e.replace('"egress":{"allow":[]', '"egress":{"allow":[{"host":"evil"}]')
                               for e in r.create["envList"]]
    attack(job_group, job_images, enforcer, "ccr-firewall", tamper, "invalid env list")


def test_extra_mount_is_denied(job_group, job_images, enforcer):
    extra = {"destination": "/host", "source": "/", "type": "bind", "options": ["rbind", "rshared", "rw"]}
    attack(job_group, job_images, enforcer, "hello-job", lambda r: r.create["mounts"].append(extra),
           "invalid mount list")


def test_read_only_input_mounted_writable_is_denied(job_group, job_images, enforcer):
    def writable(r):
        r.create["mounts"][0]["options"] = [o.replace("ro", "rw") for o in r.create["mounts"][0]["options"]]
    attack(job_group, job_images, enforcer, "hello-job", writable, "invalid mount list")


def test_unknown_layer_is_denied(job_group, job_images, enforcer):
    def unknown(r):
        r.layers = (*r.layers[:-1], fake_layer("attacker's layer"))
    attack(job_group, job_images, enforcer, "hello-job", unknown, "deviceHash not found")


def test_layers_of_another_image_cannot_form_the_app(job_group, job_images, enforcer):
    # Every layer is known, but this stack is no container's: the overlay is refused.
    def mixed(r):
        runtime = job_images.resolve("localhost/ccr/ccr-runtime:0.1.0").layers
        r.layers = (runtime[0], r.layers[1])
    attack(job_group, job_images, enforcer, "hello-job", mixed, "mount_overlay denied")


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.update(user={"id": "0", "name": "root"}), "invalid user"),
    (lambda c: c.update(privileged=True), "privileged escalation not allowed"),
    (lambda c: c.update(noNewPrivileges=False), "invalid noNewPrivileges"),
    (lambda c: c.update(workingDir="/tmp"), "invalid working directory"),
])
def test_app_cannot_escalate(job_group, job_images, enforcer, change, reason):
    attack(job_group, job_images, enforcer, "hello-job", lambda r: change(r.create), reason)


def test_added_capability_is_dropped_not_granted(job_group, job_images, enforcer):
    request = requests_for(job_group, job_images, "hello-job")
    request.create["capabilities"] = copy.deepcopy(request.create["capabilities"])
    for kind in ("bounding", "effective", "permitted"):
        request.create["capabilities"][kind] = ["CAP_SYS_ADMIN"]
    decision = request.start(enforcer)
    assert decision.result["caps_list"]["effective"] == []


def test_exec_into_a_container_is_denied(job_group, job_images, enforcer):
    requests_for(job_group, job_images, "hello-job").start(enforcer)
    decision = enforcer.decide("exec_in_container", {"containerID": "hello-job-c0ffee", "argList": ["sh"],
                                                     "envList": [], "workingDir": "/"})
    assert not decision.allowed


def test_stack_dumps_and_runtime_logging_are_denied(enforcer):
    assert not enforcer.decide("dump_stacks", {}).allowed
    assert not enforcer.decide("runtime_logging", {}).allowed
    assert enforcer.decide("get_properties", {}).allowed
