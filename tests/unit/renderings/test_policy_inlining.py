"""An API spec's Rego travels inside the resolved spec (CCR_SPEC), so HOST_DATA measures the exact policy
text and a room whose proxy was handed another policy is refused by the CCE policy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sidecars.common.errors import PolicyDenied, SpecError
from sidecars.renderings.cce import policy_hash, render_policy
from sidecars.renderings.enforcer import GuestRequests, PolicyEnforcer
from sidecars.room.group import canonical_spec_json, render_group
from sidecars.spec import MAX_SPEC_JSON_BYTES, load_spec, parse_spec

from .conftest import VARIABLES, images_for

ALLOW_GET_HELLO = "examples/cleanroomhello-api/allow-get-hello.rego"


def api_spec_with(repo: Path, directory: Path, rego: str):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spec.yaml").write_text((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    (directory / "allow-get-hello.rego").write_text(rego)
    return load_spec(directory / "spec.yaml", variables=VARIABLES)


def host_data(spec) -> str:
    group = render_group(spec)
    return policy_hash(render_policy(group, images_for(group)))


def test_host_data_changes_with_the_rego_text_and_only_with_it(repo, tmp_path):
    rego = (repo / ALLOW_GET_HELLO).read_text()
    original = host_data(api_spec_with(repo, tmp_path / "a", rego))
    assert host_data(api_spec_with(repo, tmp_path / "b", rego)) == original
    # One character of the policy (GET → PUT) and even a comment change what the members agreed on.
    assert host_data(api_spec_with(repo, tmp_path / "c", rego.replace('"GET"', '"PUT"'))) != original
    assert host_data(api_spec_with(repo, tmp_path / "d", rego + "# a comment\n")) != original


def test_the_proxy_started_with_another_policy_is_refused(repo, tmp_path):
    rego = (repo / ALLOW_GET_HELLO).read_text()
    group = render_group(api_spec_with(repo, tmp_path, rego))
    images = images_for(group)
    enforcer = PolicyEnforcer(render_policy(group, images))
    try:
        proxy = group.container("ccr-proxy")
        request = GuestRequests.for_container(proxy, images.resolve(proxy.image), "ccr-proxy-c0ffee")
        # The operator swaps the agreed policy for one that lets everything through.
        permissive = json.dumps("package envoy.authz\n\ndefault allow := true\n")[1:-1]
        request.create["envList"] = [e.replace(json.dumps(rego)[1:-1], permissive) if e.startswith("CCR_SPEC=")
                                     else e for e in request.create["envList"]]
        assert any(permissive in e for e in request.create["envList"])
        with pytest.raises(PolicyDenied, match="invalid env list"):
            request.start(enforcer)
        honest = GuestRequests.for_container(proxy, images.resolve(proxy.image), "ccr-proxy-c0ffe2")
        assert honest.start(enforcer).allowed
    finally:
        enforcer.close()


def test_a_spec_without_its_policy_text_cannot_be_rendered(repo):
    import yaml

    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    spec = parse_spec(data, variables=VARIABLES)  # not loaded from its file: the Rego was never read
    with pytest.raises(SpecError) as info:
        render_group(spec)
    assert info.value.problems == ["endpoints[0].policy: the Rego of allow-get-hello.rego (endpoint hello) is not "
                                   "in the spec (load the spec from its file, which inlines it)"]


def test_the_spec_size_ceiling_is_the_kernels_and_an_oversized_policy_is_named(repo, tmp_path):
    rego = (repo / ALLOW_GET_HELLO).read_text()
    base = len(canonical_spec_json(api_spec_with(repo, tmp_path / "base", rego)))
    padding = "# " + "x" * (MAX_SPEC_JSON_BYTES - base - 2)  # a comment line: JSON adds nothing to it
    largest = api_spec_with(repo, tmp_path / "largest", rego + padding)
    text = canonical_spec_json(largest)
    assert len(text) == MAX_SPEC_JSON_BYTES
    # The ceiling is real: a process gets exactly this CCR_SPEC, and one byte more cannot be exec'd.
    seen = subprocess.run(["sh", "-c", 'printf %s "$CCR_SPEC" | wc -c'], env={"CCR_SPEC": text},
                          capture_output=True, text=True, check=True)
    assert int(seen.stdout) == MAX_SPEC_JSON_BYTES
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["true"], env={"CCR_SPEC": text + "x"})
    # One byte more is refused where the spec is loaded (so `ccr spec validate` says so), not at rendering.
    with pytest.raises(SpecError) as info:
        api_spec_with(repo, tmp_path / "over", rego + padding + "x")
    assert info.value.problems == [
        f"the resolved spec is {MAX_SPEC_JSON_BYTES + 1} bytes of JSON, over the {MAX_SPEC_JSON_BYTES} a sidecar's "
        f"CCR_SPEC environment variable can hold (Linux MAX_ARG_STRLEN); the largest policy is endpoints[0] (hello, "
        f"{len(rego + padding) + 1} characters)"]


def test_explain_names_the_measured_policy_and_that_no_policy_refuses_everything(repo, tmp_path):
    from sidecars.renderings.explain import explain
    from sidecars.renderings.render import render

    spec = api_spec_with(repo, tmp_path, (repo / ALLOW_GET_HELLO).read_text())
    inline = spec.model_copy(update={"endpoints": [spec.endpoints[0].model_copy(update={"policy": None})]})
    closed = spec.model_copy(update={"endpoints": [spec.endpoints[0].model_copy(
        update={"policy": None, "policy_rego": None})]})
    texts = {name: explain(s, render(s, images_for(render_group(s))))
             for name, s in (("file", spec), ("inline", inline), ("closed", closed))}
    assert "filtered by the Rego policy allow-get-hello.rego" in texts["file"]
    assert "filtered by the Rego policy written in the spec" in texts["inline"]
    assert "filtered by no request policy, so every request is refused" in texts["closed"]
    assert len({text.splitlines()[1] for text in texts.values()}) == 3  # three different HOST_DATA
