from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from .conftest import VARIABLES

ARGS = [a for k, v in VARIABLES.items() for a in ("--var", f"{k}={v}")]


def ccr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], capture_output=True, text=True, check=check)


def test_policy_hash_is_stable_across_runs_and_is_the_sha256_of_the_policy_file(repo, lock_file, tmp_path):
    spec = str(repo / "examples/cleanroomhello-job/spec.yaml")
    first = ccr("spec", "render", "policy-hash", spec, *ARGS, "--layers", str(lock_file)).stdout.strip()
    second = ccr("spec", "render", "policy-hash", spec, *ARGS, "--layers", str(lock_file)).stdout.strip()
    assert first == second and len(first) == 64
    ccr("spec", "render", "policy", spec, *ARGS, "--layers", str(lock_file), "-o", str(tmp_path / "policy.rego"))
    assert hashlib.sha256((tmp_path / "policy.rego").read_bytes()).hexdigest() == first


def test_explain_names_each_party_its_key_and_what_the_room_may_do(repo, lock_file):
    out = ccr("spec", "explain", str(repo / "examples/cleanroomhello-job/spec.yaml"), *ARGS,
              "--layers", str(lock_file)).stdout
    host_data = ccr("spec", "render", "policy-hash", str(repo / "examples/cleanroomhello-job/spec.yaml"), *ARGS,
                    "--layers", str(lock_file)).stdout.strip()
    for party, key in (("publisher", "publisher-kek"), ("partner", "partner-kek"), ("consumer", "consumer-kek")):
        assert f"Party {party}:" in out and f"key {key}" in out
    assert out.count(f"whose CCE policy hashes to {host_data}") == 3
    assert "read publisher's data publisher-input" in out and "read-only" in out
    assert "write consumer-output for consumer" in out
    assert "all egress is blocked" in out and "any member can revoke it" in out


def test_release_policy_command_prints_json(repo, lock_file):
    out = ccr("spec", "render", "release-policy", str(repo / "examples/cleanroomhello-job/spec.yaml"), *ARGS,
              "--layers", str(lock_file), "--party", "consumer").stdout
    assert json.loads(out)["anyOf"][0]["authority"] == "https://maa.example.test"


def test_missing_image_is_one_line_naming_it(repo, tmp_path):
    (tmp_path / "empty.json").write_text("{}")
    done = ccr("spec", "render", "policy-hash", str(repo / "examples/cleanroomhello-job/spec.yaml"), *ARGS,
               "--layers", str(tmp_path / "empty.json"), check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "image localhost/ccr/ccr-runtime:0.1.0 is not in the layer lock" in done.stderr
