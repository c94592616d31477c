"""The `ccr` grammar, checked on the whole parser: every command is `ccr NOUN VERB`, every noun and verb says
what it is, outputs are `-o/--output`, a spec is SPEC, one flag means one thing; handlers load lazily."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator

import pytest

from sidecars.cli import build_parser
from sidecars.cliargs import parser_at, reach, subcommands

Path = tuple[str, ...]

TREE = """
spec validate | spec explain | spec import-azure
spec render policy | spec render policy-hash | spec render arm | spec render k8s | spec render compose
spec render release-policy | spec render layers | spec render spark
sidecar list
sidecar run
attestation verify | attestation mock-platform | attestation mock-evidence
emulators start | emulators stop | emulators status | emulators release-compose
aci run | aci status | aci logs | aci delete
firewall apply | firewall verify | firewall show | firewall clean
governance member create | governance member register | governance member activate | governance member list
governance contract create | governance contract propose | governance contract show
governance proposal list | governance proposal show | governance proposal actions | governance proposal vote
governance proposal withdraw
governance policy set | governance policy show
governance consent enable | governance consent disable | governance consent status
governance logging enable | governance logging disable | governance logging status
governance telemetry enable | governance telemetry disable | governance telemetry status
governance secret set
governance document put | governance document propose | governance document show
governance ca enable | governance ca generate-key | governance ca show
governance oidc enable | governance oidc generate-key | governance oidc show
governance deployment propose | governance deployment show
governance events list | governance setup | governance federate
keys create-kek | keys import-secret
images build
room up | room down | room status | room logs
cluster down
logs export | logs download | logs show
telemetry export | telemetry download | telemetry show
proxy render
data publish | data download
analytics dataset publish | analytics dataset show | analytics dataset list | analytics dataset revoke
analytics dataset enable
analytics query propose | analytics query vote | analytics query show | analytics query list | analytics query revoke
analytics query enable
analytics run | analytics runs | analytics serve
analytics budget show | analytics budget raise
workspace start
"""

# Options that name different things in different commands, so their metavars may differ.
MANY_MEANINGS = {"-o", "--output", "--name", "--kek", "-h", "--help"}


def walk(parser: argparse.ArgumentParser, path: Path = ()) -> Iterator[tuple[Path, argparse.ArgumentParser]]:
    """Every parser of the tree, groups and commands, with the words that lead to it."""
    yield path, parser
    for name, child in subcommands(parser).items():
        yield from walk(child, (*path, name))


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture(scope="module")
def commands(parser) -> dict[Path, argparse.ArgumentParser]:
    return {path: p for path, p in walk(parser) if not subcommands(p)}


def test_every_command_is_noun_verb_and_the_tree_is_the_decided_one(commands):
    expected = {tuple(entry.split()) for line in TREE.strip().splitlines() for entry in line.split(" | ")}
    assert set(commands) == expected
    assert all(len(path) >= 2 for path in commands), "a command at the top level is a verb without its noun"


def test_every_group_says_what_its_noun_is_and_lists_each_command_in_one_line(parser):
    for path, group in walk(parser):
        choices = next((a for a in group._actions if isinstance(a, argparse._SubParsersAction)), None)
        if choices is None:
            continue
        if path:
            assert group.description, f"ccr {' '.join(path)}: no description of the noun"
        lines = {c.dest: c.help for c in choices._choices_actions}
        assert set(lines) == set(choices.choices), f"ccr {' '.join(path)}: a command without a help line"
        assert all(text and "\n" not in text for text in lines.values())


def test_every_command_names_a_handler_that_exists(commands):
    for path, command in commands.items():
        handler = command.get_default("handler")
        assert isinstance(handler, str) and ":" in handler, f"ccr {' '.join(path)}: no lazy handler"
        module, _, function = handler.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), handler
        assert command.description, f"ccr {' '.join(path)}: no description"


def test_every_output_is_dash_o_output(commands):
    for path, command in commands.items():
        for action in command._actions:
            if action.dest == "output":
                assert action.option_strings == ["-o", "--output"], f"ccr {' '.join(path)}"
            assert not {"--out", "--dir", "--html", "--file"} & set(action.option_strings), \
                f"ccr {' '.join(path)}: {action.option_strings} (outputs are -o/--output)"


# Where other flags can replace the spec, it stays an option: the sink or volume named by URL and container,
# HOST_DATA given as hex, the proxy's spec taken from $CCR_SPEC as its container does.
SPEC_OPTIONAL = {("logs", "download"), ("telemetry", "download"), ("data", "publish"), ("data", "download"),
                 ("governance", "policy", "set"), ("proxy", "render"), ("analytics", "dataset", "publish"),
                 ("workspace", "start")}


def test_a_spec_is_the_spec_positional_unless_flags_can_replace_it(commands):
    as_option = set()
    for path, command in commands.items():
        for action in command._actions:
            if action.dest == "spec":
                assert action.metavar == "SPEC", f"ccr {' '.join(path)}"
                assert action.option_strings in ([], ["--spec"]), f"ccr {' '.join(path)}"
                if action.option_strings:
                    as_option.add(path)
                    assert not action.required, f"ccr {' '.join(path)}: a required spec is the SPEC positional"
    assert as_option == SPEC_OPTIONAL


def test_one_flag_means_one_thing(commands):
    seen: dict[str, set] = defaultdict(set)
    for command in commands.values():
        for action in command._actions:
            for option in set(action.option_strings) - MANY_MEANINGS:
                seen[option].add((action.dest, action.metavar, type(action).__name__))
    assert {option: uses for option, uses in seen.items() if len(uses) > 1} == {}


def test_help_lists_no_old_spelling(parser):
    from sidecars.oldspellings import RESPELLINGS

    assert not {"up", "down", "status", "export", "deploy", "render"} & set(subcommands(parser))
    patterns = []
    for old in {r.old for r in RESPELLINGS if r.old != r.new}:
        # `ccr sidecar`, `ccr governance proposal`: nouns now
        verbs = subcommands(parser_at(parser, old) or argparse.ArgumentParser())
        after = rf" (?!(?:{'|'.join(verbs)})\b)[\w<]" if verbs else r"(?![\w-])"
        patterns.append(rf"\bccr {' '.join(old)}{after}")
    patterns += [rf"\bccr {r.old[0]}(?![\w-])" for r in RESPELLINGS if r.old[0] not in subcommands(parser)]
    patterns += [rf"{flag}(?![\w-])" for r in RESPELLINGS for flag in r.flags]
    for path, node in walk(parser):
        text = node.format_help()
        shown = [p for p in patterns if re.search(p, text)]
        assert not shown, f"ccr {' '.join(path)} --help shows an old spelling: {shown}"


def test_building_the_parser_imports_no_handler(tmp_path):
    # `ccr --help` stays fast only if the handler modules (and what they import) load when a command runs.
    code = ("import sys; from sidecars.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.endswith('.commands')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert result.stdout.strip() == "[]"


def test_a_nouns_verbs_are_built_when_it_is_used():
    # `ccr --help` builds the nouns only; `ccr room up ...` builds room's verbs, and no other noun's.
    def verbs_built(noun: argparse.ArgumentParser) -> dict:
        return next(a for a in noun._actions if isinstance(a, argparse._SubParsersAction)).choices

    parser = build_parser()
    nouns = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert all(verbs_built(noun) == {} for noun in nouns.values())
    assert reach(parser, ["room", "up", "spec.yaml"]) == ("room", "up")
    assert set(verbs_built(nouns["room"])) == {"up", "down", "status", "logs"}
    assert all(verbs_built(noun) == {} for name, noun in nouns.items() if name != "room")
