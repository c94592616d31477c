"""The spellings from before `ccr NOUN VERB` keep working for one release: each runs the new command (the same
parsed arguments, the same handler) and prints exactly one line saying what replaced it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

import sidecars.cli
from sidecars import oldspellings
from sidecars.cli import build_parser, main
from sidecars.cliargs import reach

LINE = 'ccr: "ccr {}" is deprecated, use "ccr {}" (the old spelling goes in the next release)'

# (old argv, the same command in the new grammar, what is said to be deprecated → its replacement)
CASES = [
    ("up s.yaml --endpoints e.json --wait", "room up s.yaml --endpoints e.json --wait", "up", "room up"),
    ("down --run-dir r", "room down --run-dir r", "down", "room down"),
    ("status --name x --json", "room status --name x --json", "status", "room status"),
    *((f"logs {name} --run-dir r", f"room logs {name} --run-dir r", f"logs {name}", f"room logs {name}")
      for name in oldspellings.OLD_LOG_NAMES),
    ("export logs --run-dir r", "logs export --run-dir r", "export logs", "logs export"),
    ("export telemetry --name x", "telemetry export --name x", "export telemetry", "telemetry export"),
    ("render compose s.yaml -o c.yml --prepare d", "spec render compose s.yaml -o c.yml --prepare d",
     "render compose", "spec render compose"),
    ("render compose --release d", "emulators release-compose --run-dir d",
     "render compose --release", "emulators release-compose --run-dir"),
    ("deploy explain s.yaml --layers l.json", "spec explain s.yaml --layers l.json", "deploy explain", "spec explain"),
    ("deploy policy s.yaml -o p.rego", "spec render policy s.yaml -o p.rego", "deploy policy", "spec render policy"),
    ("deploy policy-hash s.yaml --var a=b", "spec render policy-hash s.yaml --var a=b",
     "deploy policy-hash", "spec render policy-hash"),
    ("deploy arm s.yaml -o out", "spec render arm s.yaml -o out", "deploy arm", "spec render arm"),
    ("deploy k8s s.yaml", "spec render k8s s.yaml", "deploy k8s", "spec render k8s"),
    ("deploy release-policy s.yaml --party p", "spec render release-policy s.yaml --party p",
     "deploy release-policy", "spec render release-policy"),
    ("deploy layers s.yaml -o l.json", "spec render layers s.yaml -o l.json", "deploy layers", "spec render layers"),
    ("deploy spark s.yaml --out a.yaml", "spec render spark s.yaml --output a.yaml", "deploy spark --out",
     "spec render spark --output"),
    ("sidecar skr --port 1", "sidecar run skr --port 1", "sidecar skr", "sidecar run skr"),
    ("governance members --cgs u", "governance member list --cgs u", "governance members", "governance member list"),
    ("governance vote p1 --reject", "governance proposal vote p1 --reject",
     "governance vote", "governance proposal vote"),
    ("governance proposal p1", "governance proposal show p1", "governance proposal p1", "governance proposal show p1"),
    ("governance events c --json", "governance events list c --json",
     "governance events c", "governance events list c"),
    ("governance member create n --dir d", "governance member create n --output d",
     "governance member create --dir", "governance member create --output"),
    ("governance secret set c n --file f", "governance secret set c n --value-file f",
     "governance secret set --file", "governance secret set --value-file"),
    ("proxy render --spec s.yaml --out o.json", "proxy render --spec s.yaml --output o.json",
     "proxy render --out", "proxy render --output"),
    *((f"{kind} download --out d --account-url u --container c", f"{kind} download --output d --storage-url u "
       "--container c", f"{kind} download --out --account-url", f"{kind} download --output --storage-url")
      for kind in ("logs", "telemetry")),
    *((f"{kind} show d1 d2 --html=r.html", f"{kind} show d1 d2 --output=r.html", f"{kind} show --html",
       f"{kind} show --output") for kind in ("logs", "telemetry")),
    ("data download out --spec s.yaml --volume v", "data download --output out --spec s.yaml --volume v",
     "data download out", "data download --output out"),
    ("data download --spec s.yaml --volume v out", "data download --spec s.yaml --volume v --output out",
     "data download out", "data download --output out"),
    ("attestation mock-platform d", "attestation mock-platform --output d",
     "attestation mock-platform d", "attestation mock-platform --output d"),
]


@pytest.fixture
def ran(monkeypatch) -> list[argparse.Namespace]:
    """The arguments each `main` call would have handed its handler (which does not run)."""
    calls: list[argparse.Namespace] = []
    monkeypatch.setattr(sidecars.cli, "run_handler", lambda args: calls.append(args) or 0)
    return calls


@pytest.mark.parametrize(("old", "new", "said", "instead"), CASES, ids=[c[0] for c in CASES])
def test_an_old_spelling_runs_the_new_command_and_says_so_once(old, new, said, instead, ran, capsys):
    assert main(old.split()) == 0
    assert capsys.readouterr().err.splitlines() == [LINE.format(said, instead)]
    assert main(new.split()) == 0
    assert capsys.readouterr().err == ""
    assert ran[0] == ran[1]


# Old groups: their help is the new group's.
GROUPS = [("deploy --help", "spec render --help", "deploy", "spec render"),
          ("render --help", "spec render --help", "render", "spec render")]


@pytest.mark.parametrize(("old", "new", "said", "instead"), GROUPS, ids=[c[0] for c in GROUPS])
def test_an_old_group_shows_the_new_groups_help(old, new, said, instead):
    assert oldspellings.respell(old.split(), build_parser()) == (new.split(), LINE.format(said, instead))


def test_every_old_spelling_is_covered_here():
    parser = build_parser()
    table = oldspellings.RESPELLINGS
    used = set()
    for old, new, _, _ in CASES + GROUPS:
        moved = oldspellings._moved(old.split(), parser)
        if moved:
            used.add(table.index(moved))
        path = reach(parser, new.split())
        used |= {i for i, r in enumerate(table) if r.old == r.new == path}
    assert [table[i] for i in sorted(set(range(len(table))) - used)] == []


def test_the_new_spellings_and_group_help_are_left_alone():
    parser = build_parser()
    for argv in (["sidecar", "--help"], ["governance", "proposal", "--help"], ["sidecar", "run", "skr"],
                 ["governance", "proposal", "show", "p1"], ["logs", "download", "-o", "d"], ["--version"], []):
        assert oldspellings.respell(argv, parser) == (argv, None)


def test_an_old_spelling_runs_for_real(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CCR_MEMBER_DIR", "CCR_CGS_ENDPOINT")}
    result = subprocess.run([sys.executable, "-m", "sidecars", "governance", "events", "c", "--cgs",
                             "https://127.0.0.1:1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        LINE.format("governance events c", "governance events list c"),
        "ccr: error: no member identity: pass --identity DIR or set CCR_MEMBER_DIR"]
