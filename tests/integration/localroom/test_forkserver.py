"""The fork server: a forked process is the process `python -m MODULE` would have been, without the imports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecars.common.errors import ProcessError
from sidecars.common.firewall_client import FirewallNotInForce, verify_firewall
from sidecars.common.forkserver import ForkServerClient
from sidecars.common.process import ManagedProcess, file_exists, wait_until
from sidecars.localroom.status import describe, room_report

PROBE = """
import atexit, json, os, sys, threading, time
import counted

atexit.register(lambda: print("atexit ran", flush=True))
def late():
    time.sleep(0.2)
    print("thread joined", flush=True)
threading.Thread(target=late).start()
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("PROBE_VALUE"),
                  "session_leader": os.getsid(0) == os.getpid(), "netns": os.readlink("/proc/self/ns/net"),
                  "counted_imports": len(open(os.environ["COUNT_FILE"]).read().splitlines()),
                  "stdin": sys.stdin.read()}), flush=True)
sys.exit(int(sys.argv[1]))
"""

#: a stand-in for the firewall's check (`python -m sidecars.firewall verify`): says what VERDICT says
VERDICT = """
import json, os, sys
verdict = os.environ["VERDICT"]
if verdict == "in force":
    print(json.dumps({"ok": True, "backend": "nftables", "netns": None}))
elif verdict == "differs":
    print("checking the rules", file=sys.stderr)
    print(json.dumps({"ok": False, "differences": ["rule out-drop is missing"]}))
    sys.exit(1)
else:
    print("ccr firewall verify: CCR_SPEC is not set", file=sys.stderr)
    sys.exit(2)
"""


@contextlib.contextmanager
def fork_server_with(tmp_path, modules: dict[str, str], preload: list[str],
                     **env_vars: str) -> Iterator[tuple[ForkServerClient, dict[str, str], ManagedProcess]]:
    """A fork server preloading PRELOAD, with MODULES (name → source) on its path."""
    folder = tmp_path / "modules"
    folder.mkdir()
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    sock = tmp_path / "fork.sock"
    env = {**os.environ, "PYTHONPATH": str(folder), **env_vars}
    argv = [sys.executable, "-m", "sidecars.common.forkserver", "--socket", str(sock),
            *(arg for module in preload for arg in ("--preload", module))]
    with ManagedProcess("forkserver", argv, ready=file_exists(sock), env=env,
                        log_path=tmp_path / "forkserver.log") as process:
        client = ForkServerClient(sock)
        try:
            yield client, env, process
        finally:
            client.close()


@pytest.fixture
def server(tmp_path):
    """A fork server preloading `counted`, a module that appends a line to COUNT_FILE each time it is imported."""
    count = tmp_path / "count"
    count.touch()
    modules = {"probe": PROBE, "sleepy": "import time\ntime.sleep(60)\n", "quick": "raise SystemExit(5)\n",
               "verdict": VERDICT, "raises": "raise RuntimeError('boom')\n", "says": "raise SystemExit('bad input')\n",
               "counted": "import os\nwith open(os.environ['COUNT_FILE'], 'a') as f:\n    f.write('imported\\n')\n"}
    with fork_server_with(tmp_path, modules, ["counted", "no_such_module"], COUNT_FILE=str(count)) as (
            client, env, process):
        wait_until(lambda: "no_such_module" in process.output(), 10, "preloading")
        yield client, env
    assert not (tmp_path / "fork.sock").exists(), "the server removes its socket when it stops"


def run_probe(client, env, tmp_path, code: int, **options) -> tuple[int, list[str]]:
    log = tmp_path / f"probe-{code}.log"
    process = ManagedProcess("probe", [sys.executable, "-m", "probe", str(code), "an argument"],
                             env={**env, "PROBE_VALUE": "from the request"}, cwd=tmp_path, log_path=log,
                             fork_server=client, **options).start()
    returncode = process.popen.wait(10)
    return returncode, log.read_text().splitlines()


def test_forked_process_is_what_python_m_would_run(server, tmp_path):
    client, env = server
    returncode, lines = run_probe(client, env, tmp_path, 3)
    assert returncode == 3
    seen = json.loads(lines[0])
    assert seen == {"argv": ["3", "an argument"], "cwd": str(tmp_path), "env": "from the request",
                    "session_leader": True, "netns": os.readlink("/proc/self/ns/net"),
                    "counted_imports": 1, "stdin": ""}, "imported once, by the server; stdin is /dev/null"
    assert lines[1:] == ["thread joined", "atexit ran"], "a normal interpreter exit"


def test_the_launchers_firewall_check_forked_passes_only_on_the_checks_ok(server):
    client, _env = server
    verdict = [sys.executable, "-m", "verdict"]
    report = verify_firewall({"VERDICT": "in force"}, verdict, fork_server=client)
    assert report.ok and report.backend == "nftables"
    with pytest.raises(FirewallNotInForce, match="rule out-drop is missing"):
        verify_firewall({"VERDICT": "differs"}, verdict, fork_server=client)
    with pytest.raises(ProcessError, match="^the firewall check failed: ccr firewall verify: CCR_SPEC is not set$"):
        verify_firewall({"VERDICT": "no room"}, verdict, fork_server=client)


def test_a_forked_firewall_check_that_hangs_is_stopped_and_fails(server):
    client, _env = server
    with pytest.raises(ProcessError, match="did not run: .*timed out"):
        verify_firewall({}, [sys.executable, "-m", "sleepy"], timeout=1, fork_server=client)
    wait_until(lambda: not _running_named("ccr-firewall-verify"), 5, "the hanging check to be killed")


def _running_named(name: str) -> list[int]:
    """The live processes whose /proc/PID/comm is NAME (cut to the kernel's 15 characters)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, IndexError, ValueError):
            continue
        if comm == name[:15] and rest.split()[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def test_a_child_ends_with_the_exit_code_and_output_python_would_give(server, tmp_path):
    client, env = server
    for module, said in (("raises", "RuntimeError: boom"), ("says", "bad input")):
        log = tmp_path / f"{module}.log"
        process = ManagedProcess(module, [sys.executable, "-m", module], env=env, fork_server=client,
                                 log_path=log).start()
        assert process.popen.wait(10) == 1
        assert log.read_text().splitlines()[-1] == said


def test_stop_reaches_the_forked_process_and_its_code_is_reported(server, tmp_path):
    client, env = server
    process = ManagedProcess("sleepy", [sys.executable, "-m", "sleepy"], env=env, fork_server=client,
                             log_path=tmp_path / "sleepy.log").start()
    assert process.running()
    assert process.stop() == -15
    assert not process.running()


def test_a_process_that_ends_at_once_is_never_taken_for_running(server, tmp_path):
    client, env = server
    for attempt in range(20):
        process = ManagedProcess("quick", [sys.executable, "-m", "quick"], env=env, fork_server=client,
                                 log_path=tmp_path / "quick.log").start()
        assert process.popen.wait(5) == 5, attempt


def test_failed_start_is_reported_with_the_child_output(server, tmp_path):
    client, env = server
    with pytest.raises(ProcessError, match="(?s)exited with code 1 before it was ready.*No module named missing"):
        ManagedProcess("missing", [sys.executable, "-m", "missing"], env=env, fork_server=client,
                       ready=lambda: False, log_path=tmp_path / "missing.log").start()


def test_only_this_python_with_dash_m_can_be_forked(server, tmp_path):
    client, env = server
    for argv, options in ((["/bin/true"], {}), ([sys.executable, "-c", "pass"], {}),
                          ([sys.executable, "-m", "probe"], {"pass_fds": [0]})):
        with pytest.raises(ProcessError):
            ManagedProcess("refused", argv, fork_server=client, log_path=tmp_path / "refused.log", **options).start()
    with pytest.raises(ProcessError, match="network namespace is chosen only"):
        ManagedProcess("refused", [sys.executable, "-m", "probe"], netns="/run/netns/x")


def test_malformed_requests_are_refused_and_the_server_keeps_serving(server, tmp_path):
    client, env = server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(client.path))
        answers = raw.makefile("rb")
        for request in (b"not json\n", b'{"op": "format-disk"}\n',
                        json.dumps({"op": "spawn", "name": "x", "module": "probe", "args": [], "env": {},
                                    "log": str(tmp_path / "x.log")}).encode() + b"\n",  # no netns descriptor
                        b'{"op": "poll", "pid": 1}\n'):  # not its child
            raw.sendall(request)
            assert "error" in json.loads(answers.readline()), request
    with pytest.raises(ProcessError, match="not a child"):
        client.returncode(os.getpid())
    assert run_probe(client, env, tmp_path, 0)[0] == 0


@pytest.mark.root
def test_forked_process_joins_the_requested_network_namespace(server, tmp_path):
    client, env = server
    name = f"ccr-fs{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        returncode, lines = run_probe(client, env, tmp_path, 0, netns=f"/run/netns/{name}")
        expected = os.readlink(f"/proc/{os.getpid()}/ns/net")
        assert returncode == 0
        assert json.loads(lines[0])["netns"] != expected
        assert json.loads(lines[0])["netns"] == f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.root
def test_another_user_cannot_ask_for_a_process(server, tmp_path):
    client, _env = server
    code = textwrap.dedent(f"""
        import os, socket
        os.setgid(1000); os.setuid(1000)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect({str(client.path)!r})
        except PermissionError:
            print("refused")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "refused", result.stdout + result.stderr
    assert Path(client.path).stat().st_mode & 0o777 == 0o600


def test_room_status_tells_running_exited_and_killed_apart(server, tmp_path):
    """`ccr room status` from the run directory alone: the fork server kept each child's exit status."""
    client, env = server
    started = {name: ManagedProcess(name, [sys.executable, "-m", module], env=env, fork_server=client,
                                    log_path=tmp_path / f"{name}.log").start()
               for name, module in (("skr", "sleepy"), ("proxy", "quick"), ("volumes", "sleepy"))}
    started["proxy"].popen.wait(5)
    os.kill(started["volumes"].pid, signal.SIGKILL)
    started["volumes"].popen.wait(5)
    records = [json.loads(started["skr"].record().to_json())]
    for name in ("proxy", "volumes"):  # recorded while they ran
        records.append({"name": name, "pid": started[name].pid, "start_time": 1, "log_path": "x"})
    records.append({"name": "launcher", "pid": 1, "start_time": 1, "log_path": "x"})  # not the server's child
    (tmp_path / "room.json").write_text(json.dumps({"name": "r", "netns": "ccr-no-such-room", "processes": records,
                                                    "fork_server": str(client.path), "container": "c"}))
    report = room_report(tmp_path)
    states = {name: sidecar["process"] for name, sidecar in report["sidecars"].items()}
    assert states["skr"] == {"state": "running", "pid": started["skr"].pid}
    assert states["proxy"] == {"state": "exited", "pid": started["proxy"].pid, "exit_code": 5}
    assert states["volumes"] == {"state": "killed", "pid": started["volumes"].pid, "signal": "SIGKILL"}
    assert states["launcher"]["state"] == "gone" and states["firewall"] == {"state": "not started"}
    assert report["app_container"] == {"name": "c", "exists": False}
    assert describe(states["volumes"]) == "killed by SIGKILL" and describe(states["proxy"]) == "exited with code 5"
    assert describe(states["firewall"]) == "not started"
    started["skr"].stop()


def test_a_child_that_names_its_imports_is_forked_once_the_server_imported_them(tmp_path):
    """Forked while the server is still preloading, a child that names a module of the preload list gets it
    imported by the server (once for every child), not by itself."""
    importers = tmp_path / "importers"
    importers.touch()
    modules = {"slow": "import time\ntime.sleep(1)\n", "child": "import os, heavy\nprint(os.getpid(), flush=True)\n",
               "heavy": "import os\nwith open(os.environ['IMPORTERS'], 'a') as f:\n    f.write(f'{os.getpid()}\\n')\n"}
    with fork_server_with(tmp_path, modules, ["slow", "heavy"], IMPORTERS=str(importers)) as (client, env, _):
        for name, imports in (("early", None), ("named", "heavy")):
            log = tmp_path / f"{name}.log"
            child = ManagedProcess(name, [sys.executable, "-m", "child"], env=env, log_path=log,
                                   fork_server=client, imports=imports).start()
            assert child.popen.wait(10) == 0
            pid = int(log.read_text().split()[0])
            importer_pids = [int(line) for line in importers.read_text().split()]
            if imports is None:
                assert pid in importer_pids, "forked at once, mid-preload: the child imported heavy itself"
            else:
                assert pid not in importer_pids, "the server imported it before it forked the child"
