from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.spec import EncryptionMode, load_spec, parse_spec

LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}


def job_data(repo) -> dict:
    return yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())


def problems_of(data, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, variables=LOCAL, **kwargs)
    return info.value.problems


@pytest.mark.parametrize("example", ["cleanroomhello-job", "cleanroomhello-api", "db-access"])
def test_examples_load(repo, example):
    variables = {**LOCAL, "db_host": "10.204.0.1", "db_config_secret": "abc_db-config"}
    spec = load_spec(repo / f"examples/{example}/spec.yaml", variables=variables)
    assert spec.name == example
    assert str(spec.maa_endpoint).startswith("https://127.0.0.1:9002")


def test_job_example_fields(repo):
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=LOCAL)
    assert [d.name for d in spec.datasources] == ["publisher-input", "partner-input"]
    assert spec.datasources[0].encryption.mode is EncryptionMode.CSE
    assert spec.datasources[0].encryption.key.kek_name == "publisher-kek"
    assert spec.datasinks[0].path_in_app == "/mnt/remote/consumer-output"
    assert spec.application.uid == 1000 and spec.application.gid == 1000
    assert spec.egress.none


def test_undefined_variable_names_field(repo):
    with pytest.raises(SpecError) as info:
        load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables={})
    assert any(p.startswith("contract.governance.endpoint: undefined variable ${cgs_endpoint}")
               for p in info.value.problems)


def test_default_variable_value():
    data = {"name": "x", "contract": {"id": "c", "governance": {"endpoint": "${nope:-https://cgs.example}"}},
            "maa_endpoint": "https://maa.example",
            "application": {"name": "a", "image": "localhost/a@sha256:" + "0" * 64,
                            "resources": {"cpu": 1, "memory_gb": 1}}}
    spec = parse_spec(data, variables={})
    assert str(spec.contract.governance.endpoint) == "https://cgs.example/"


def test_each_problem_names_its_field(repo):
    data = job_data(repo)
    data["datasources"][0]["encryption"]["mode"] = "ROT13"
    data["datasinks"][0]["store"]["container"] = "Bad_Name"
    data["application"]["resources"]["cpu"] = -1
    data["application"]["colour"] = "blue"
    problems = problems_of(data)
    assert any(p.startswith("datasources[0].encryption.mode: Input should be 'CSE', 'CPK', 'SSE-C' or 'SSE'")
               for p in problems), problems
    assert any(p.startswith("datasinks[0].store.container:") for p in problems), problems
    assert any(p.startswith("application.resources.cpu:") for p in problems), problems
    assert "application.colour: unknown field (check the spelling)" in problems


def test_cross_checks(repo):
    data = job_data(repo)
    data["datasinks"][0]["name"] = "publisher-input"
    data["datasources"][1]["owner"] = "stranger"
    problems = problems_of(data)
    assert any("datasinks[0].name: 'publisher-input' is already used by datasources[0]" in p for p in problems)
    assert any("datasources[1].owner: 'stranger' is not a contract member" in p for p in problems)


def test_sidecar_apis_are_named_and_key_vaults_need_skr(repo):
    data = job_data(repo)
    assert parse_spec(data, variables=LOCAL).application.sidecar_apis == []  # none unless the contract says
    data["application"]["sidecar_apis"] = ["governance", "docker"]
    data["application"]["key_vaults"] = ["https://vault.example"]
    problems = problems_of(data)
    assert any(p.startswith("application.sidecar_apis[1]: Input should be 'governance', 'skr'") for p in problems)
    data["application"]["sidecar_apis"] = ["governance"]
    assert problems_of(data) == ["application.key_vaults: the app can use them only with skr in "
                                 "application.sidecar_apis"]


def test_key_required_for_cse_and_forbidden_for_sse(repo):
    data = job_data(repo)
    del data["datasources"][0]["encryption"]["key"]
    data["datasinks"][0]["encryption"]["mode"] = "SSE"
    problems = problems_of(data)
    assert any(p.startswith("datasources[0].encryption: mode CSE needs a key reference") for p in problems)
    assert any(p.startswith("datasinks[0].encryption: mode SSE uses no key") for p in problems)


def test_a_volume_without_encryption_is_named(repo):
    # No default: CSE, the default mode, would need a key reference the spec does not give.
    data = job_data(repo)
    del data["datasources"][1]["encryption"]
    assert problems_of(data) == ["datasources[1].encryption: Field required"]


def test_api_needs_endpoint_and_policy_file_exists(repo, tmp_path):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["endpoints"][0]["policy"] = "missing.rego"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_spec(spec_file, variables=LOCAL)
    assert info.value.problems == [
        "endpoints[0].policy: endpoint hello: cannot read missing.rego next to the spec: No such file or directory"]
    data["endpoints"] = []
    assert "endpoints: an api application needs at least one endpoint" in problems_of(data)


def api_copy(repo, tmp_path, rego: bytes | None = None):
    """The API example in tmp_path; `rego` replaces its policy file's content."""
    example = repo / "examples/cleanroomhello-api"
    (tmp_path / "spec.yaml").write_text((example / "spec.yaml").read_text())
    (tmp_path / "allow-get-hello.rego").write_bytes((example / "allow-get-hello.rego").read_bytes()
                                                   if rego is None else rego)
    return tmp_path / "spec.yaml"


def test_loading_a_spec_file_inlines_each_policy_text_byte_for_byte(repo, tmp_path):
    rego = (repo / "examples/cleanroomhello-api/allow-get-hello.rego").read_text()
    # Rego strings may hold what looks like a spec variable: it is policy text, never substituted.
    rego += '\nmarker := "${maa_endpoint} ${HOME} $${x}"\n'
    spec = load_spec(api_copy(repo, tmp_path, rego.encode()), variables=LOCAL)
    assert spec.endpoints[0].policy == "allow-get-hello.rego"
    assert spec.endpoints[0].policy_rego == rego


def test_a_resolved_spec_reloads_anywhere_with_the_same_policy_text(repo, tmp_path):
    from sidecars.room.group import canonical_spec_json

    rego = 'package envoy.authz\n\ndefault allow := false\n# ${maa_endpoint} stays as written\n'
    spec = load_spec(api_copy(repo, tmp_path, rego.encode()), variables=LOCAL)
    text = canonical_spec_json(spec)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "spec.json").write_text(text)  # no policy file beside it, as in a container
    for again in (parse_spec(json.loads(text), variables={**LOCAL, "maa_endpoint": "https://other"}),
                  load_spec(elsewhere / "spec.json", variables=LOCAL)):
        assert again.endpoints[0].policy_rego == rego
        assert canonical_spec_json(again) == text


def test_policy_rego_may_be_written_inline_instead_of_a_file(repo):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["endpoints"][0] = {"name": "hello", "port": 8080, "policy_rego": "package envoy.authz\n"}
    spec = parse_spec(data, variables=LOCAL, base_dir=repo / "does-not-exist")
    assert spec.endpoints[0].policy is None and spec.endpoints[0].policy_rego == "package envoy.authz\n"


@pytest.mark.parametrize("make, reason", [
    (lambda d: (d / "allow-get-hello.rego").mkdir(), "cannot read allow-get-hello.rego next to the spec: "
                                                     "Is a directory"),
    (lambda d: (d / "allow-get-hello.rego").write_bytes(b"package envoy.authz\n\xff\xfe"),
     "allow-get-hello.rego is not UTF-8 text (byte 20, line 2)"),
])
def test_an_unreadable_policy_file_is_a_spec_error_naming_the_endpoint(repo, tmp_path, make, reason):
    example = repo / "examples/cleanroomhello-api"
    (tmp_path / "spec.yaml").write_text((example / "spec.yaml").read_text())
    make(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "spec.yaml", variables=LOCAL)
    assert info.value.problems == [f"endpoints[0].policy: endpoint hello: {reason}"]


def test_a_missing_policy_file_is_one_line_from_the_cli(repo, tmp_path):
    example = repo / "examples/cleanroomhello-api"
    (tmp_path / "spec.yaml").write_text((example / "spec.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "policy-hash",
                             str(tmp_path / "spec.yaml"), *(f"--var={k}={v}" for k, v in LOCAL.items())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ccr: error: {tmp_path / 'spec.yaml'}: endpoints[0].policy: endpoint hello: cannot read "
        "allow-get-hello.rego next to the spec: No such file or directory"]


def test_bad_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert len(info.value.problems) == 1 and "not valid YAML at line" in info.value.problems[0]


def run_ccr(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sidecars", *args], capture_output=True, text=True, env=env)


def test_cli_validate_ok_and_errors(repo, tmp_path):
    endpoints = tmp_path / "endpoints.json"
    import json

    endpoints.write_text(json.dumps(LOCAL))
    ok = run_ccr("spec", "validate", str(repo / "examples/cleanroomhello-job/spec.yaml"),
                 "--endpoints", str(endpoints))
    assert ok.returncode == 0 and ok.stdout.strip() == "OK", ok.stderr
    data = job_data(repo)
    data["application"]["user"] = "root"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = run_ccr("spec", "validate", str(bad), "--endpoints", str(endpoints))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        f"{bad}: application.user: must be a numeric uid or uid:gid, e.g. 1000:1000"]
    assert "Traceback" not in result.stderr


def test_cli_missing_file_is_one_line(tmp_path):
    result = run_ccr("spec", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stdout.strip() == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"
