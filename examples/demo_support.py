"""What the demos share: readable steps, and `ccr` commands shown as they run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def say(text: str = "") -> None:
    print(text, flush=True)


def step(number: int, text: str) -> None:
    say(f"\n== {number}. {text}")


def ccr(*args: str, capture: bool = False, check: bool = True, echo: bool = True) -> subprocess.CompletedProcess:
    """Run `ccr ARGS` from the checkout, echoing the command line; `capture` returns its stdout."""
    if echo:
        say(f"$ ccr {' '.join(args)}")
    result = subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `ccr {args[0]} {args[1] if len(args) > 1 else ''}` failed "
                         f"(exit {result.returncode})")
    return result


def run_folder(description: str, prefix: str, argv: list[str] | None = None) -> Path:
    """A demo's command line (`--run-dir DIR`, `--help` showing its docstring): the folder that keeps
    everything it makes, a new temporary one unless given."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="keep everything here (default: a new temporary folder)")
    args = parser.parse_args(argv)
    run = (args.run_dir or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
    run.mkdir(parents=True, exist_ok=True)
    return run


def contract_id(spec: Path) -> str:
    import yaml

    return yaml.safe_load(spec.read_text())["contract"]["id"]


def contract_ca(spec: Path, endpoints: str, identity: Path, out: Path) -> Path:
    """The contract CA's certificate as a member reads it from CGS (`ccr governance ca show`), saved to `out`: what
    a consumer checks a datasink's signed manifest with (`ccr data download --contract-ca`)."""
    shown = ccr("governance", "ca", "show", contract_id(spec), "--endpoints", endpoints, "--identity",
                str(identity), capture=True).stdout
    out.write_text(shown[shown.index("-----BEGIN CERTIFICATE-----"):])
    return out


def leave_nothing_behind(run: Path, room_dir: Path) -> None:
    """However a demo ends: a room still up is brought down (`ccr room down` removes its state file), and the
    stand-ins it started are stopped."""
    if (room_dir / "room.json").exists():
        ccr("room", "down", "--run-dir", str(room_dir), check=False)
    if (run / "processes.json").exists():
        ccr("emulators", "stop", "--run-dir", str(run), check=False)
