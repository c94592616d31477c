"""What the demos share: readable steps, `ccr` commands shown as they run, and where the room runs:
`ccr room up` (default) or, with `--aci`, the local Confidential ACI simulator (`ccr aci run` of the
ARM template `ccr spec render arm` wrote, accepted in CGS as the contract's deployment)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_demo(example: str) -> ModuleType:
    """examples/EXAMPLE/demo.py as a module, for the benches and tests that run a demo's steps (the folders'
    dashes make them no importable package)."""
    path = REPO / "examples" / example / "demo.py"
    spec = importlib.util.spec_from_file_location(f"{example.replace('-', '_')}_demo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


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
    return demo_arguments(description, prefix, argv)[0]


def demo_arguments(description: str, prefix: str, argv: list[str] | None = None) -> tuple[Path, Room]:
    """The run folder (`--run-dir DIR`) and where the room runs (`--aci`: the local C-ACI simulator)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="keep everything here (default: a new temporary folder)")
    parser.add_argument("--aci", action="store_true", help="run the room from its ARM template in the local "
                                                           "Confidential ACI simulator (ccr aci run)")
    args = parser.parse_args(argv)
    run = (args.run_dir or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
    run.mkdir(parents=True, exist_ok=True)
    return run, (SimulatedAci(run) if args.aci else LocalRoom(run))


#: the launcher's port in the room (its /status says how the app is doing)
LAUNCHER_PORT = 8200
APP_DONE = ("exited", "failed", "stopped")
JOB_TIMEOUT_S = 300.0


class LocalRoom:
    """`ccr room up`: every sidecar a process in a network namespace of this machine."""

    #: `ccr room up` tells the proxy the room's address (CCR_ROOM_ADDRESS): its certificate names it
    tls_name: str | None = None

    def __init__(self, run: Path):
        self.run_dir = run / "room"

    def up(self, spec: Path, endpoints: str, spec_vars: tuple[str, ...] = (), *, wait: bool = False) -> None:
        ccr("room", "up", str(spec), "--endpoints", endpoints, *spec_vars, "--run-dir", str(self.run_dir),
            *(["--wait"] if wait else []))

    @property
    def address(self) -> str:
        return json.loads((self.run_dir / "room.json").read_text())["room_v4"]

    def app_status(self) -> str:
        report = json.loads(ccr("room", "status", "--run-dir", str(self.run_dir), "--json", capture=True,
                                echo=False).stdout)
        launcher = (report["sidecars"].get("launcher") or {}).get("status") or {}
        return (launcher.get("app") or {}).get("status", "unknown")

    def export_logs(self) -> None:
        ccr("logs", "export", "--run-dir", str(self.run_dir))

    def down(self) -> None:
        ccr("room", "down", "--run-dir", str(self.run_dir))

    def leave_nothing_behind(self) -> None:
        if (self.run_dir / "room.json").exists():
            ccr("room", "down", "--run-dir", str(self.run_dir), check=False)


class SimulatedAci:
    """`ccr aci run`: the room from `ccr spec render arm`'s template alone, deployed as the contract's members
    accepted it in CGS, in the local Confidential ACI simulator."""

    #: A template cannot carry the group's IP (ACI assigns it at deployment) and the proxy's certificate
    #: names only localhost and 127.0.0.1 besides it: a client checks the chain to the contract CA and one
    #: of those names.
    tls_name: str | None = "localhost"

    def __init__(self, run: Path):
        self.run = run
        self.state_dir = run / "aci"

    def up(self, spec: Path, endpoints: str, spec_vars: tuple[str, ...] = (), *, wait: bool = False) -> None:
        arm = self.run / "arm"
        ccr("spec", "render", "arm", str(spec), "--endpoints", endpoints, *spec_vars, "-o", str(arm))
        template = arm / "cleanroom-arm-template.json"
        ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(self.run / "members"),
            *spec_vars, "--deployment", str(template))
        ccr("aci", "run", str(template), "--endpoints", endpoints, "--contract", contract_id(spec),
            "--state-dir", str(self.state_dir))
        # `ccr room up` returns once the app runs; a C-ACI deployment once the containers do: wait for the app
        # (a job: until it is done).
        deadline = time.monotonic() + JOB_TIMEOUT_S
        awaited = APP_DONE if wait else ("running", *APP_DONE)
        while (status := self.app_status()) not in awaited:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the app was not {'done' if wait else 'running'} within {JOB_TIMEOUT_S:g} s")
            time.sleep(0.5)
        app = self._launcher().get("app") or {}
        say(f"   app {status}" + (f" (exit code {app.get('exit_code')})" if status in APP_DONE else ""))
        if status in APP_DONE and (status != "exited" or app.get("exit_code") != 0):
            self._say_sidecar_logs()
            raise SystemExit(f"demo: the app did not succeed: {json.dumps(self._launcher())[:2000]}")

    def _say_sidecar_logs(self) -> None:
        """The last lines of the sidecars that were not ready (as the launcher names them), before the group
        and its logs are deleted: what a failed run leaves to diagnose it."""
        error = str(self._launcher().get("error") or "")
        for container in ("skr", "governance", "identity", "volumes", "proxy", "telemetry"):
            if f"{container}:" in error:
                say(f"   last lines of ccr-{container}:")
                ccr("aci", "logs", "--state-dir", str(self.state_dir), "--tail", "15", self._state().get("name", ""),
                    f"ccr-{container}", check=False)

    def _state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    @property
    def address(self) -> str:
        return self._state()["ip"]

    def _launcher(self) -> dict:
        from sidecars.localroom.roomhttp import room_status

        answer = room_status(self._state()["netns"], LAUNCHER_PORT)
        return answer.json() if answer is not None and answer.body[:1] == b"{" else {}

    def app_status(self) -> str:
        launcher = self._launcher()
        if launcher.get("status") == "failed" and not launcher.get("app"):
            return "failed"  # the launcher gave up before launching (a sidecar not ready, a policy refusal)
        return (launcher.get("app") or {}).get("status", "unknown")

    def export_logs(self) -> None:
        from sidecars.localroom.roomhttp import room_request

        answer = room_request(self._state()["netns"], LAUNCHER_PORT, "POST", "/gov/exportLogs", timeout=120)
        if answer.status != 200:
            raise SystemExit(f"demo: the log export was refused ({answer.status}): {answer.body[:300]!r}")
        say(f"   exported: {answer.body.decode(errors='replace')[:300]}")

    def down(self) -> None:
        ccr("aci", "delete", "--state-dir", str(self.state_dir))

    def leave_nothing_behind(self) -> None:
        if (self.state_dir / "state.json").exists():
            ccr("aci", "delete", "--state-dir", str(self.state_dir), check=False)


Room = LocalRoom | SimulatedAci


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


def leave_nothing_behind(run: Path, room: Room) -> None:
    """However a demo ends: a room still up is brought down (`ccr room down` / `ccr aci delete` remove their
    state), and the stand-ins it started are stopped."""
    room.leave_nothing_behind()
    if (run / "processes.json").exists():
        ccr("emulators", "stop", "--run-dir", str(run), check=False)
