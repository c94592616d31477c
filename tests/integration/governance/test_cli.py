"""`ccr governance …` end to end against a private CGS stand-in: two members agree a contract, its policy,
logging, a document and the CA, set consent and a secret, and read the audit trail."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sidecars.cli import main as ccr
from sidecars.common.memberauth import MemberIdentity
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import load_spec

from .conftest import layer_lock, start_cgs

EXAMPLE_SPEC = Path(__file__).resolve().parents[3] / "examples" / "cleanroomhello-job" / "spec.yaml"


def test_two_members_govern_a_contract_from_the_command_line(tmp_path, server_tls, platform_dir, local_ca, capsys):
    cgs = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    try:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps({"cgs_endpoint": cgs.url, "ca_bundle": str(local_ca.cert_file)}))

        def run(*args: str, member: str = "alice") -> str:
            code = ccr(["governance", *args, "--endpoints", str(endpoints), "--identity", str(tmp_path / member)])
            out = capsys.readouterr()
            assert code == 0, out.err
            return out.out

        registered = {}
        for name in ("alice", "bob"):
            assert ccr(["governance", "member", "create", name, "-o", str(tmp_path / name)]) == 0
            assert ccr(["governance", "member", "register", str(tmp_path / name), "--operator",
                        str(cgs.state_dir / "operator"), "--endpoints", str(endpoints)]) == 0
            registered[name] = capsys.readouterr().out
        # alice was the first member: nobody else had to accept her, and she acknowledged at once
        assert "(set_member alice): Accepted" in registered["alice"] and "alice" in registered["alice"]
        # bob waits for alice, then acknowledges himself
        bob_joins = re.search(r"proposal (\w+) \(set_member bob\): Open", registered["bob"]).group(1)
        members = run("member", "list")
        assert re.search(r"alice +Active", members) and "bob" not in members
        assert bob_joins in run("proposal", "list", "--state", "Open")
        assert '"name": "set_member"' in run("proposal", "actions", bob_joins)
        assert ": Accepted" in run("proposal", "vote", bob_joins)
        assert re.search(r"bob +Accepted", run("member", "list"))
        assert "Active" in run("member", "activate", member="bob")
        assert re.search(r"bob +Active", run("member", "list"))

        run("contract", "create", "collab", "--data", '{"purpose": "overlap"}')
        withdrawn = re.search(r"proposal (\w+) \(set_contract\): Open", run("contract", "propose", "collab")).group(1)
        assert ": Withdrawn" in run("proposal", "withdraw", withdrawn)
        assert '"state": "Draft"' in run("contract", "show", "collab")
        proposal = re.search(r"proposal (\w+) \(set_contract\): Open", run("contract", "propose", "collab")).group(1)
        assert '"state": "Proposed"' in run("contract", "show", "collab")
        assert ": Accepted" in run("proposal", "vote", proposal, member="bob")
        assert '"state": "Accepted"' in run("contract", "show", "collab")

        out = run("policy", "set", "collab", "--host-data", "ab" * 32)
        proposal = re.search(r"proposal (\w+)", out).group(1)
        run("proposal", "vote", proposal, member="bob")
        assert json.loads(run("policy", "show", "collab")) == {
            "x-ms-sevsnpvm-hostdata": ["ab" * 32], "x-ms-sevsnpvm-is-debuggable": [False]}

        spec_vars = [arg for name in ("maa_endpoint", "storage_url", "keyvault_url")
                     for arg in ("--var", f"{name}=https://{name.replace('_', '-')}.invalid")]
        spec = load_spec(EXAMPLE_SPEC, variables={"cgs_endpoint": cgs.url,
                                                  **dict(v.split("=", 1) for v in spec_vars[1::2])})
        images = layer_lock(render_group(spec))
        (tmp_path / "layers.json").write_text(images.dump())
        out = run("policy", "set", "collab", "--spec", str(EXAMPLE_SPEC), *spec_vars,
                  "--layers", str(tmp_path / "layers.json"))
        expected = render(spec, images).host_data
        assert f"HOST_DATA of {EXAMPLE_SPEC}: {expected}" in out
        run("proposal", "vote", re.search(r"proposal (\w+)", out).group(1), member="bob")
        assert expected in json.loads(run("policy", "show", "collab"))["x-ms-sevsnpvm-hostdata"]

        for option in ("logging", "telemetry"):
            proposal = re.search(r"proposal (\w+)", run(option, "enable", "collab")).group(1)
            assert f"{option}: disabled" in run(option, "status", "collab")
            run("proposal", "vote", proposal, member="bob")
            assert f"{option}: enabled" in run(option, "status", "collab")

        assert "execution: enabled" in run("consent", "status", "collab")
        run("consent", "disable", "collab", member="bob")
        assert "disabled by the following member(s): bob" in run("consent", "status", "collab")
        run("consent", "enable", "collab", member="bob")
        assert "execution: enabled" in run("consent", "status", "collab")

        assert re.search(r"secret id: [0-9a-f]{64}_db-config", run("secret", "set", "collab", "db-config",
                                                                   "--value", "host=db;user=app"))
        run("document", "put", "query", "--contract", "collab", "--data", '{"sql": "SELECT 1"}')
        proposal = re.search(r"proposal (\w+)", run("document", "propose", "query")).group(1)
        run("proposal", "vote", proposal, member="bob")
        assert '"state": "Accepted"' in run("document", "show", "query")

        proposal = re.search(r"proposal (\w+)", run("ca", "enable", "collab")).group(1)
        assert "not enabled (1 proposal(s) open)" in run("ca", "show", "collab")
        run("proposal", "vote", proposal, member="bob")
        assert "BEGIN CERTIFICATE" not in run("ca", "show", "collab")  # enabled; no key until a member asks
        assert "signing key for request 1" in run("ca", "generate-key", "collab")
        assert "BEGIN CERTIFICATE" in run("ca", "show", "collab")

        proposal = re.search(r"proposal (\w+) \(enable_oidc_issuer\): Open", run("oidc", "enable")).group(1)
        assert "not enabled" in run("oidc", "show")
        run("proposal", "vote", proposal, member="bob")
        assert "signing key ccr-cgs-oidc-1 (request 1)" in run("oidc", "generate-key")
        assert f"enabled, {cgs.url}/oidc" in run("oidc", "show")

        table = run("events", "list", "collab")
        assert "intact" in table and "execution_disable" in table and "put_secret" in table
        assert "host=db" not in table
    finally:
        cgs.proc.stop()


def test_user_mistakes_are_one_line_errors(tmp_path, capsys, cgs, local_ca):
    MemberIdentity.create(tmp_path / "stranger", "stranger")
    cases = [
        (["governance", "member", "register", str(tmp_path / "nobody"), "--operator", str(tmp_path / "nobody"),
          "--cgs", cgs.url], "no member identity"),
        (["governance", "policy", "set", "c", "--host-data", "xyz", "--cgs", cgs.url, "--identity",
          str(cgs.state_dir / "operator")], "--host-data: expected 64 hex digits"),
        (["governance", "contract", "show", "nope", "--cgs", cgs.url, "--ca-bundle", str(local_ca.cert_file),
          "--identity", str(tmp_path / "stranger")], "refused member stranger's certificate"),
        (["governance", "secret", "set", "c", "n", "--cgs", cgs.url, "--identity", str(cgs.state_dir / "operator")],
         "exactly one of --value or --value-file"),
    ]
    for argv, expected in cases:
        assert ccr(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ccr: error:") and expected in err[0], err
