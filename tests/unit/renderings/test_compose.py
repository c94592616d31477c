"""`ccr spec render compose`: the container group model as a compose file (the run itself: tests/system/compose)."""

import subprocess
import sys

import yaml

from sidecars.renderings.compose import EMULATION_VAR, render_compose, stand_in_endpoints
from sidecars.room.group import render_group
from sidecars.spec import load_spec

SPEC = "examples/cleanroomhello-job/spec.yaml"


def _group(repo):
    return render_group(load_spec(repo / SPEC, variables=stand_in_endpoints(EMULATION_VAR)))


def test_committed_docker_compose_is_the_rendering_of_the_job_spec(repo):
    result = subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "compose", SPEC], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (repo / "docker-compose.yml").read_text(), \
        "docker-compose.yml is stale: ccr spec render compose examples/cleanroomhello-job/spec.yaml " \
        "-o docker-compose.yml"


def test_every_container_of_the_group_is_a_service_in_one_network_namespace(repo):
    group = _group(repo)
    services = yaml.safe_load(render_compose(group, SPEC))["services"]
    assert services["room"]["network_mode"] == "none"
    for container in group.platform_containers:
        service = services[container.name.removeprefix("ccr-")]
        assert service["network_mode"] == "service:room"
        assert service["image"] == container.image
        assert service["entrypoint"] == list(container.command)
        assert service["user"] == "0:0"
        assert bool(service.get("privileged")) == container.privileged
        env = service["environment"]
        for key, value in container.env:
            assert env[key] == (value.replace("$", "$$") if key == "CCR_SPEC" else value)
        assert {v["target"] for v in service["volumes"]} >= {m.target for m in container.mounts}
    for stand_in in ("maa", "cgs", "entra", "keyvault", "azurite"):
        assert services[stand_in]["network_mode"] == "service:room"
    assert "NET_ADMIN" in services["firewall"]["cap_add"]
    assert services["volumes"]["devices"] == ["/dev/fuse:/dev/fuse"]
    # the FUSE mounts the volumes sidecar makes reach the launcher (which hands them to the app)
    shared = [next(v for v in services[name]["volumes"] if v["target"] == "/mnt/remote")
              for name in ("volumes", "launcher")]
    assert shared[0] == shared[1] and shared[0]["bind"]["propagation"] == "rshared"
    # the app is not a service: the launcher starts it after the consent and policy checks
    assert group.app.name not in services


def test_startup_order_is_the_rooms(repo):
    services = yaml.safe_load(render_compose(_group(repo), SPEC))["services"]
    # podman cannot start a container whose --requires (every compose dependency) has exited: nothing
    # depends on the firewall init container; the launcher checks its rules from the kernel instead.
    assert not [name for name, service in services.items() if "firewall" in service.get("depends_on", {})]
    assert services["volumes"]["depends_on"]["governance"] == {"condition": "service_started"}
    assert "governance" in services["volumes"]["depends_on"]
    assert "volumes" in services["launcher"]["depends_on"]
    assert {"maa", "cgs", "keyvault", "azurite", "entra"} <= set(services["firewall"]["depends_on"])


def test_spec_dollars_survive_compose_interpolation(repo):
    group = _group(repo)
    text = render_compose(group, SPEC)
    spec_env = yaml.safe_load(text)["services"]["skr"]["environment"]["CCR_SPEC"]
    # only ${CCR_EMULATION_DIR} is left for compose to fill; every other $ is doubled
    assert spec_env.replace("$$", "").count("$") == spec_env.count(EMULATION_VAR)
