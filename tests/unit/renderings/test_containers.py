from sidecars.renderings.containers import REMOTE_ROOT, VOLUME_REMOTE, canonical_spec_json, render_group


def test_group_has_every_sidecar_the_firewall_init_container_and_the_app(job_group):
    names = [c.name for c in job_group.containers]
    assert names == ["ccr-firewall", "ccr-skr", "ccr-governance", "ccr-identity", "ccr-volumes", "ccr-proxy",
                     "ccr-telemetry", "ccr-launcher", "hello-job"]
    assert [c.name for c in job_group.init_containers] == ["ccr-firewall"]
    assert job_group.app.started_by == "launcher"
    assert all(c.started_by == "platform" for c in job_group.sidecars)


def test_app_is_rendered_from_the_spec(job_spec, job_group):
    app = job_group.app
    assert app.image == job_spec.application.image
    assert app.command == tuple(job_spec.application.command)
    assert (app.user.uid, app.user.gid) == (1000, 1000)
    assert not app.privileged and app.drop_all_capabilities and app.no_new_privileges and app.read_only_rootfs
    assert not app.allow_stdio_access
    mounts = {m.target: (m.volume, m.source, m.mode) for m in app.mounts}
    assert mounts == {
        f"{REMOTE_ROOT}/publisher-input": (VOLUME_REMOTE, "publisher-input", "ro"),
        f"{REMOTE_ROOT}/partner-input": (VOLUME_REMOTE, "partner-input", "ro"),
        f"{REMOTE_ROOT}/consumer-output": (VOLUME_REMOTE, "consumer-output", "rw"),
    }


def test_every_sidecar_receives_the_resolved_spec_in_its_measured_environment(job_spec, job_group):
    expected = canonical_spec_json(job_spec)
    for sidecar in job_group.platform_containers:
        assert sidecar.env_dict["CCR_SPEC"] == expected
        assert sidecar.command == ("ccr", "sidecar", "run", sidecar.name.removeprefix("ccr-"))


def test_registry_prefix_option_changes_every_sidecar_image_only(job_spec):
    group = render_group(job_spec, registry="myacr.azurecr.io/ccr", version="9.9.9")
    assert {c.image for c in group.platform_containers} == {"myacr.azurecr.io/ccr/ccr-runtime:9.9.9",
                                                             "myacr.azurecr.io/ccr/ccr-proxy:9.9.9"}
    assert group.app.image == job_spec.application.image


def test_rendering_is_deterministic(job_spec):
    assert render_group(job_spec) == render_group(job_spec)


def test_api_room_exposes_only_the_proxy_inbound_port(api_spec):
    group = render_group(api_spec)
    assert [(p.port, p.public) for p in group.public_ports] == [(15001, True)]
    assert all(not p.public for p in group.app.ports)


def test_model_serialises_to_plain_json_for_policies(job_group):
    import json

    data = json.loads(json.dumps(job_group.to_json()))
    app = data["containers"][-1]
    assert app["name"] == "hello-job" and app["user"] == {"uid": 1000, "gid": 1000}
    assert app["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert {"target": "/mnt/remote/publisher-input", "volume": "remotemounts", "mode": "ro",
            "source": "publisher-input", "propagation": "private"} in app["mounts"]
    assert app["resources"] == {"cpu": 0.5, "memory_gb": 0.5} and app["privileged"] is False
