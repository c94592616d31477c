"""Hostile spec files: each attack is handed to the loader (and to the real `ccr` commands that load specs),
and must end in one line naming the problem, fast, without a traceback, without reading anything outside the
spec's folder. The rules a spec's *fields* break are in test_spec_rules.py; these are about the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sidecars.common.errors import ConfigError, SpecError
from sidecars.common.room import SPEC_ENV, spec_from_environment
from sidecars.renderings.azure_spec import import_azure_spec
from sidecars.spec import MAX_POLICY_FILE_BYTES, MAX_SPEC_FILE_BYTES, endpoint_variables, load_spec

REPO = Path(__file__).resolve().parents[2]
API = REPO / "examples" / "cleanroomhello-api"
LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}
SECRET = "the-host-secret-4f1c"

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
LONG_LAUGHS = "a: &a " + "x" * 4000 + "\nb: [" + ", ".join(["*a"] * 1000) + "]\n"
DEEP = "name: " + "[" * 100_000 + "]" * 100_000 + "\n"
DEEP_BY_ALIASES = "a: &a " + "[" * 40 + "x" + "]" * 40 + "\nb: &b " + "[" * 30 + "*a" + "]" * 30 + "\n"

#: name → (file bytes, the one problem line, after "FILE: ")
HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "billion laughs": (LAUGHS.encode(), "the spec expands to more than 65536 nodes (through its aliases)"),
    "an alias repeating a long string": (LONG_LAUGHS.encode(),
                                         "the spec expands to more than 1048576 characters (through its aliases)"),
    "deep nesting": (DEEP.encode(), "the spec is nested deeper than 64 levels at line 1"),
    "deep nesting through aliases": (DEEP_BY_ALIASES.encode(),
                                     "the spec is nested deeper than 64 levels once its aliases are expanded"),
    "a recursive alias": (b"name: &a [*a]\n",
                          "the spec has an alias inside the node it refers to (line 1): it would expand forever"),
    "not UTF-8": (b"apiVersion: ccr/v1\nname: caf\xe9\n", "the spec is not UTF-8 text (byte 28, line 2)"),
    "over the size limit": (b"name: x\n" + b"#" * MAX_SPEC_FILE_BYTES + b"\n",
                            f"the spec is over the limit of {MAX_SPEC_FILE_BYTES} bytes"),
    "an integer of 5000 digits": (b"name: " + b"1" * 5000 + b"\n",
                                  "the spec is not valid YAML: a value cannot be read: Exceeds the limit (4300 digits) "
                                  "for integer string conversion: value has 5000 digits; use "
                                  "sys.set_int_max_str_digits() to increase the limit"),
    "an impossible date": (b"name: 2001-13-45\n",
                           "the spec is not valid YAML: a value cannot be read: month must be in 1..12"),
    "a python tag": (b"name: !!python/object/apply:os.system [id]\n",
                     "the spec is not valid YAML at line 1, column 7: could not determine a constructor for the tag "
                     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    "two documents": (b"name: a\n---\nname: b\n",
                      "the spec is not valid YAML at line 2, column 1: but found another document"),
}


def problems(path: Path, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, variables=LOCAL, **kwargs)
    return info.value.problems


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_a_hostile_file_is_one_line_fast(tmp_path, name):
    content, line = HOSTILE_FILES[name]
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    started = time.monotonic()
    assert problems(spec) == [line]
    assert time.monotonic() - started < 3


def test_a_spec_that_is_a_fifo_does_not_block(tmp_path):
    spec = tmp_path / "spec.yaml"
    os.mkfifo(spec)
    assert problems(spec) == ["the spec is not a regular file"]


def test_the_examples_are_far_below_the_limits(repo):
    for spec in repo.glob("examples/*/spec.yaml"):
        assert spec.stat().st_size < MAX_SPEC_FILE_BYTES // 50


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """`ccr spec validate` and `ccr spec render policy-hash` on every hostile file, all at once, each bounded in
    time (a hang is a failure, not a stuck suite)."""
    root = tmp_path_factory.mktemp("hostile")
    endpoints = root / "endpoints.json"
    endpoints.write_text(json.dumps(LOCAL))
    running = {}
    for index, (name, (content, _)) in enumerate(HOSTILE_FILES.items()):
        spec = root / f"spec{index}.yaml"
        spec.write_bytes(content)
        for command in (("spec", "validate"), ("spec", "render", "policy-hash")):
            running[name, command] = spec, subprocess.Popen(
                [sys.executable, "-m", "sidecars", *command, str(spec), "--endpoints", str(endpoints)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for key, (spec, process) in running.items():
        out, err = process.communicate(timeout=120)
        results[key] = spec, subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_the_cli_answers_a_hostile_file_in_one_line(cli_results, name):
    _, line = HOSTILE_FILES[name]
    spec, validate = cli_results[name, ("spec", "validate")]
    assert (validate.returncode, validate.stdout, validate.stderr) == (1, f"{spec}: {line}\n", "")
    spec, render = cli_results[name, ("spec", "render", "policy-hash")]
    assert (render.returncode, render.stdout, render.stderr) == (1, "", f"ccr: error: {spec}: {line}\n")


# --- policy files: only from the spec's own folder -----------------------------------------------------------

def api_spec(folder: Path, policy: str) -> Path:
    """The API example in `folder`, its endpoint's policy named `policy`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((API / "spec.yaml").read_text())
    data["endpoints"][0]["policy"] = policy
    (folder / "spec.yaml").write_text(yaml.safe_dump(data))
    return folder / "spec.yaml"


@pytest.fixture
def secret_outside(tmp_path) -> Path:
    """A file beside the spec's folder, which a hostile spec wants inlined into the contract."""
    secret = tmp_path / "secret.rego"
    secret.write_text(f"package envoy.authz\n\n# {SECRET}\n")
    return secret


def refused_policy(spec: Path) -> str:
    found = problems(spec)
    assert len(found) == 1 and SECRET not in found[0], found
    return found[0]


def test_a_policy_by_absolute_path_is_not_read(tmp_path, secret_outside):
    line = refused_policy(api_spec(tmp_path / "room", str(secret_outside)))
    assert line == (f"endpoints[0].policy: {str(secret_outside)!r} must be a path relative to the spec's folder, "
                    "not an absolute one: a policy file is read only from the spec's own folder")


def test_a_policy_up_the_tree_is_not_read(tmp_path, secret_outside):
    line = refused_policy(api_spec(tmp_path / "room", "../secret.rego"))
    assert "must not climb out of the spec's folder with '..'" in line


def test_a_symlink_out_of_the_folder_is_not_followed(tmp_path, secret_outside):
    spec = api_spec(tmp_path / "room", "policy.rego")
    (tmp_path / "room" / "policy.rego").symlink_to(secret_outside)
    assert refused_policy(spec) == (
        f"endpoints[0].policy: endpoint hello: policy.rego resolves to {secret_outside}, outside the spec's folder "
        f"{tmp_path / 'room'} (a symlink out)")


def test_a_folder_symlinked_out_is_not_followed(tmp_path, secret_outside):
    spec = api_spec(tmp_path / "room", "policies/secret.rego")
    (tmp_path / "room" / "policies").symlink_to(tmp_path)
    assert "outside the spec's folder" in refused_policy(spec)


def test_a_symlink_to_a_device_is_not_read(tmp_path):
    spec = api_spec(tmp_path / "room", "zero.rego")
    (tmp_path / "room" / "zero.rego").symlink_to("/dev/zero")
    assert "resolves to /dev/zero, outside the spec's folder" in refused_policy(spec)


def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    """The positive control: containment is about where the file is, not about symlinks as such."""
    spec = api_spec(tmp_path / "room", "current.rego")
    (tmp_path / "room" / "policies").mkdir()
    (tmp_path / "room" / "policies" / "v1.rego").write_text((API / "allow-get-hello.rego").read_text())
    (tmp_path / "room" / "current.rego").symlink_to("policies/v1.rego")
    assert load_spec(spec, variables=LOCAL).endpoints[0].policy_rego == (API / "allow-get-hello.rego").read_text()


def test_a_policy_that_is_a_fifo_does_not_block(tmp_path):
    spec = api_spec(tmp_path / "room", "policy.rego")
    os.mkfifo(tmp_path / "room" / "policy.rego")
    assert refused_policy(spec) == "endpoints[0].policy: endpoint hello: policy.rego is not a regular file"


def test_a_policy_symlink_loop_is_one_line(tmp_path):
    spec = api_spec(tmp_path / "room", "loop.rego")
    (tmp_path / "room" / "loop.rego").symlink_to("loop.rego")
    assert refused_policy(spec) == "endpoints[0].policy: endpoint hello: loop.rego is a symlink loop"


def test_a_policy_over_the_size_limit_is_not_read(tmp_path):
    spec = api_spec(tmp_path / "room", "huge.rego")
    (tmp_path / "room" / "huge.rego").write_text("package envoy.authz\n#" + "x" * MAX_POLICY_FILE_BYTES)
    assert refused_policy(spec) == (
        f"endpoints[0].policy: endpoint hello: huge.rego is over the limit of {MAX_POLICY_FILE_BYTES} bytes")


def test_the_cli_never_embeds_a_file_from_outside(tmp_path, secret_outside):
    """The attack end to end: `ccr spec render policy` would have put the file into the CCE policy, and
    `ccr spec explain` into what the parties read."""
    spec = api_spec(tmp_path / "room", "../secret.rego")
    for command in (("spec", "render", "policy"), ("spec", "explain")):
        result = subprocess.run([sys.executable, "-m", "sidecars", *command, str(spec),
                                 *(f"--var={k}={v}" for k, v in LOCAL.items())],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and SECRET not in result.stdout + result.stderr, result.stdout
        assert result.stderr.count("\n") == 1 and "must not climb out" in result.stderr


# --- the files beside a spec: endpoints.json, CCR_SPEC, an Azure spec ---------------------------------------

@pytest.mark.parametrize(("content", "line"), [
    (b"[1, 2]", "the endpoints file must be a JSON object of names and values"),
    (b"[" * 100_000 + b"]" * 100_000, "the endpoints file is nested deeper than 64 levels"),
    (b'{"a": "caf\xe9"}', "the endpoints file is not UTF-8 text (byte 10, line 1)"),
    (b'{"a": ' + b"1" * 5000 + b"}", "the endpoints file is not JSON: Exceeds the limit (4300 digits) for integer "
                                     "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() "
                                     "to increase the limit"),
    (b'{"a": "' + b"x" * MAX_SPEC_FILE_BYTES + b'"}', f"the endpoints file is over the limit of "
                                                      f"{MAX_SPEC_FILE_BYTES} bytes"),
])
def test_a_hostile_endpoints_file_is_one_line(tmp_path, content, line):
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_bytes(content)
    with pytest.raises(SpecError) as info:
        endpoint_variables(endpoints)
    assert info.value.problems == [line]
    result = subprocess.run([sys.executable, "-m", "sidecars", "spec", "validate", str(API / "spec.yaml"),
                             "--endpoints", str(endpoints)], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (1, f"{endpoints}: {line}\n", "")


def test_a_hostile_ccr_spec_is_one_line():
    for text, message in (("[" * 100_000, f"{SPEC_ENV} is nested deeper than 64 levels"),
                          (json.dumps({"name": [[[[[[]]]]]] * 20_000}), f"{SPEC_ENV} has more than 65536 nodes")):
        with pytest.raises(ConfigError) as info:
            spec_from_environment({SPEC_ENV: text})
        assert info.value.message == message


@pytest.mark.parametrize("name", ["billion laughs", "deep nesting", "not UTF-8"])
def test_a_hostile_azure_spec_is_one_line(tmp_path, name):
    content, line = HOSTILE_FILES[name]
    source = tmp_path / "azure.yaml"
    source.write_bytes(content)
    with pytest.raises(SpecError) as info:
        import_azure_spec(source)
    assert info.value.problems == [line.replace("the spec", "the Azure spec")]


# --- the loading party's environment ---------------------------------------------------------------------

def test_a_spec_cannot_read_the_environment_into_the_contract(tmp_path, monkeypatch):
    """`${NAME}` is filled only from --endpoints and --var: a spec naming an environment variable of whoever
    loads it (and would upload it to CGS with `ccr governance setup`) gets an undefined variable instead."""
    monkeypatch.setenv("CCR_TEST_HOST_SECRET", SECRET)
    data = yaml.safe_load((API / "spec.yaml").read_text())
    data["application"]["env"] = {"LEAK": "${CCR_TEST_HOST_SECRET}"}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    (tmp_path / "allow-get-hello.rego").write_text((API / "allow-get-hello.rego").read_text())
    assert problems(spec) == ["application.env.LEAK: undefined variable ${CCR_TEST_HOST_SECRET} (pass --endpoints "
                              "FILE or --var NAME=VALUE)"]
    assert load_spec(spec, variables={**LOCAL, "CCR_TEST_HOST_SECRET": "given"}).application.env["LEAK"] == "given"
