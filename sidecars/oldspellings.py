"""The spellings `ccr` had before its commands became `ccr NOUN VERB`, kept working for one release.

One table, applied to argv before it is parsed: an old spelling is rewritten into the new one, one line
on stderr says so, and the new command runs. The parser itself knows only the new spellings, so `--help`
never shows an old one. Delete this module (and its call in `sidecars.cli.main`) in the next release.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from .cliargs import parser_at, reach, subcommands

#: The logs `ccr logs NAME` showed in the release before `ccr room logs NAME` (the old spelling's names).
OLD_LOG_NAMES = ("launcher", "firewall", "telemetry", "skr", "governance", "identity", "volumes", "proxy", "forward")


class Respelling:
    """`ccr OLD...` is now `ccr NEW...`; in what follows, each of `flags` is renamed, and `positional`,
    when set, names the option that the old spelling's first positional argument became. `when`: applies
    only when this option is given (the old command had two meanings, and with this option it ignored all
    other arguments, so they are dropped).

    A plain class, not a dataclass: this module loads on every `ccr` run, `ccr --help` included, and
    @dataclass would cost more than the rest of the module (0.6 ms)."""

    __slots__ = ("old", "new", "flags", "positional", "when")

    def __init__(self, old: tuple[str, ...], new: tuple[str, ...], flags: Mapping[str, str] | None = None, *,
                 positional: str | None = None, when: str | None = None) -> None:
        self.old, self.new, self.flags = old, new, flags or {}
        self.positional, self.when = positional, when

    def __repr__(self) -> str:
        return f"Respelling({' '.join(self.old)!r} -> {' '.join(self.new)!r})"


def _respellings() -> tuple[Respelling, ...]:
    moved = [
        Respelling(("up",), ("room", "up")),
        Respelling(("down",), ("room", "down")),
        Respelling(("status",), ("room", "status")),
        *(Respelling(("logs", name), ("room", "logs", name)) for name in OLD_LOG_NAMES),
        Respelling(("export", "logs"), ("logs", "export")),
        Respelling(("export", "telemetry"), ("telemetry", "export")),
        Respelling(("render", "compose"), ("emulators", "release-compose"), {"--release": "--run-dir"},
                   when="--release"),
        Respelling(("render", "compose"), ("spec", "render", "compose")),
        Respelling(("deploy", "explain"), ("spec", "explain")),
        Respelling(("deploy",), ("spec", "render")),  # `ccr deploy --help`: the group that holds its commands
        Respelling(("render",), ("spec", "render")),
        Respelling(("deploy", "spark"), ("spec", "render", "spark"), {"--out": "--output"}),
        *(Respelling(("deploy", kind), ("spec", "render", kind))
          for kind in ("policy", "policy-hash", "arm", "k8s", "release-policy", "layers")),
        Respelling(("sidecar",), ("sidecar", "run")),
        Respelling(("governance", "members"), ("governance", "member", "list")),
        Respelling(("governance", "vote"), ("governance", "proposal", "vote")),
        Respelling(("governance", "proposal"), ("governance", "proposal", "show")),
        Respelling(("governance", "events"), ("governance", "events", "list")),
    ]
    renamed = [
        Respelling(("proxy", "render"), ("proxy", "render"), {"--out": "--output"}),
        *(Respelling((kind, "download"), (kind, "download"), {"--out": "--output", "--account-url": "--storage-url"})
          for kind in ("logs", "telemetry")),
        *(Respelling((kind, "show"), (kind, "show"), {"--html": "--output"}) for kind in ("logs", "telemetry")),
        Respelling(("governance", "member", "create"), ("governance", "member", "create"), {"--dir": "--output"}),
        Respelling(("governance", "secret", "set"), ("governance", "secret", "set"), {"--file": "--value-file"}),
        Respelling(("data", "download"), ("data", "download"), positional="--output"),
        Respelling(("attestation", "mock-platform"), ("attestation", "mock-platform"), positional="--output"),
    ]
    return (*moved, *renamed)


RESPELLINGS = _respellings()


def respell(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], str | None]:
    """argv in the new spelling, and the deprecation line to print when it was an old one."""
    argv = list(argv)
    said: list[str] = []  # the old spelling's words, and the new ones: what the line says
    instead: list[str] = []
    moved = _moved(argv, parser)
    if moved is not None:
        rest = argv[len(moved.old):]
        argv = [*moved.new, *(_only(rest, moved.when) if moved.when else rest)]
        said, instead = list(moved.old), list(moved.new)
        if _is_noun(parser, moved.old):  # `sidecar skr`: the word after names the command
            said.append(rest[0])
            instead.append(rest[0])
    path = reach(parser, argv)
    renamed = next((r for r in RESPELLINGS if r.old == r.new == path), None)
    for respelling in (moved, renamed):  # the moved command's flags, then the new command's
        if respelling is not None:
            argv, old_flags, new_flags = _rename(argv, len(path), respelling, parser)
            if old_flags:
                said, instead = (said or list(path)) + old_flags, (instead or list(path)) + new_flags
    if not said:
        return argv, None
    return argv, (f'ccr: "ccr {" ".join(said)}" is deprecated, use "ccr {" ".join(instead)}" '
                  "(the old spelling goes in the next release)")


def _moved(argv: list[str], parser: argparse.ArgumentParser) -> Respelling | None:
    """The respelling of argv's command words, if argv is not already in the new grammar."""
    if reach(parser, argv):
        return None
    candidates = sorted((r for r in RESPELLINGS if r.old != r.new and tuple(argv[:len(r.old)]) == r.old),
                        key=lambda r: (len(r.old), r.when is not None), reverse=True)
    for respelling in candidates:
        rest = argv[len(respelling.old):]
        if respelling.when and not any(a == respelling.when or a.startswith(f"{respelling.when}=") for a in rest):
            continue
        if _is_noun(parser, respelling.old) and (not rest or rest[0].startswith("-")):
            continue  # `ccr sidecar --help` is the new group's help, not an old spelling
        return respelling
    return None


def _rename(argv: list[str], start: int, respelling: Respelling,
            parser: argparse.ArgumentParser) -> tuple[list[str], list[str], list[str]]:
    """argv with the respelling's flags renamed from `start` on; and the old and new flags, for the message."""
    out, old, new = argv[:start], [], []
    leaf = parser_at(parser, argv[:start])
    takes_value = _value_options(leaf) if leaf else set()
    positional_done = respelling.positional is None
    i = start
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if token == "--":
            out += argv[i:]
            break
        if name in respelling.flags:
            out.append(respelling.flags[name] + eq + value)
            old.append(name)
            new.append(respelling.flags[name])
        elif token.startswith("-"):
            out.append(token)
            if not eq and token in takes_value and i + 1 < len(argv):
                i += 1
                out.append(argv[i])
        elif not positional_done:
            out += [respelling.positional, token]
            old.append(token)
            new += [respelling.positional, token]
            positional_done = True
        else:
            out.append(token)
        i += 1
    return out, old, new


def _only(args: list[str], option: str) -> list[str]:
    """`option` and its value, out of args."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{option}="):
            return [arg]
        if arg == option:
            return args[i:i + 2]
    return []


def _is_noun(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> bool:
    """Whether `ccr WORDS` is a noun of the new grammar (`ccr sidecar`, `ccr governance proposal`)."""
    found = parser_at(parser, words)
    return found is not None and bool(subcommands(found))


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of `parser` that take a value (so the next token is not a positional)."""
    return {option for action in parser._actions if action.option_strings and action.nargs != 0
            for option in action.option_strings}


def print_deprecation(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)
