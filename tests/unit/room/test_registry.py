"""The sidecar registry: what a sidecar is, written once, and every rendering made from it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sidecars.cli import main as ccr
from sidecars.common.containers import Resources
from sidecars.common.errors import SpecError
from sidecars.common.room import Placement, Room
from sidecars.common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from sidecars.localroom.plan import RoomPlan
from sidecars.localroom.status import room_report
from sidecars.localroom.up import preload_modules
from sidecars.renderings.arm import arm_template
from sidecars.renderings.cce import render_policy
from sidecars.renderings.compose import EMULATION_VAR, compose_project, stand_in_endpoints
from sidecars.renderings.k8s import pod_manifest
from sidecars.renderings.layers import ImageInfo, LockedImages
from sidecars.room.group import render_group
from sidecars.room.registry import REGISTRY, SIDECARS, Registry
from sidecars.spec import load_spec

SIDECARS_DIR = Path(__file__).resolve().parents[3] / "sidecars"
JOB_SPEC = "examples/cleanroomhello-job/spec.yaml"


@dataclass(frozen=True)
class ToyConfig:
    port: int
    governance_url: str


def _configure_toy(room: Room) -> ToyConfig:
    return ToyConfig(port=room.layout.port("toy"), governance_url=room.url("governance"))


#: A sidecar that is not part of the product: one record, registered for the length of a test.
TOY = Sidecar(name="toy", summary="a toy sidecar (tests only)", ports=(SidecarPort("api", 8999),),
              resources=Resources(0.1, 0.1), wave=3, configure=_configure_toy, run="toy.main:run",
              needs=frozenset({Need.CONSENT}), preload=("toy.engine",))


@pytest.fixture
def job_spec(repo):
    return load_spec(repo / JOB_SPEC, variables=stand_in_endpoints(EMULATION_VAR))


@pytest.fixture
def toy_room():
    with REGISTRY.extended(TOY):
        yield


def _images(group) -> LockedImages:
    return LockedImages({c.image: ImageInfo(reference=c.image, digest="sha256:" + "1" * 64, layers=("2" * 64,),
                                            env=(), working_dir="/", user="") for c in group.containers})


def test_a_toy_sidecar_appears_in_every_rendering(toy_room, job_spec, tmp_path, capsys):
    group = render_group(job_spec)
    toy = group.container("ccr-toy")
    assert toy.command == ("ccr", "sidecar", "run", "toy") and [p.port for p in toy.ports] == [8999]
    assert dict(toy.env)["CCR_SIDECAR"] == "toy"

    policy = render_policy(group, _images(group))
    assert '"ccr-toy"' in policy or "ccr-toy" in policy
    arm = arm_template(group, policy)
    assert "ccr-toy" in [c["name"] for c in arm["resources"][0]["properties"]["containers"]]
    pod = pod_manifest(group, policy)
    assert "ccr-toy" in [c["name"] for c in pod["spec"]["containers"]]
    compose = compose_project(group)["services"]
    assert compose["toy"]["entrypoint"] == ["ccr", "sidecar", "run", "toy"]
    assert set(compose["toy"]["depends_on"]) >= {"skr", "governance", "identity", "telemetry"}
    assert "toy" in compose["launcher"]["depends_on"]

    # ccr room up: its process, its wave, its modules preloaded, and the launcher waits for it
    plan = RoomPlan(spec=job_spec, group=group, placement=Placement(run_dir=tmp_path))
    assert [s.name for s in plan.waves()[2]] == ["volumes", "proxy", "toy"]
    process = plan.process(TOY)
    assert process.argv[-3:] == ("sidecar", "run", "toy")
    assert process.env["CCR_SIDECAR"] == "toy" and process.env["CCR_RUN_DIR"] == str(tmp_path)
    assert {"toy.main", "toy.engine"} <= set(preload_modules())
    room = Room(job_spec, Placement(run_dir=tmp_path), REGISTRY.layout())
    launcher = REGISTRY.get("launcher").configure(room)
    assert launcher.sidecar_status_urls["toy"] == "http://127.0.0.1:8999/status"
    assert TOY.configure(room) == ToyConfig(8999, "http://127.0.0.1:8300")

    # ccr room status and ccr room logs
    (tmp_path / "room.json").write_text(json.dumps({"name": "r", "netns": "ccr-no-such-room"}))
    assert "toy" in room_report(tmp_path)["sidecars"]
    assert ccr(["sidecar", "list"]) == 0
    assert "toy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ccr(["sidecar", "run", "--help"])
    assert "a toy sidecar (tests only)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ccr(["room", "logs", "--help"])
    assert "toy" in capsys.readouterr().out


def test_the_registry_refuses_a_second_sidecar_on_a_taken_port():
    clash = Sidecar(name="clash", summary="", ports=(SidecarPort("api", REGISTRY.get("skr").port()),),
                    resources=Resources(0.1, 0.1), wave=2, configure=_configure_toy, run="x:y")
    with pytest.raises(ValueError, match="port 8284 of clash is also skr.api's"):
        Registry((*SIDECARS, clash))
    with pytest.raises(ValueError, match="two sidecars are named skr"):
        Registry((*SIDECARS, REGISTRY.get("skr")))


def test_every_app_api_of_the_spec_has_one_sidecar_behind_it():
    without_skr = tuple(s for s in SIDECARS if s.name != "skr")
    with pytest.raises(ValueError, match="application.sidecar_apis names"):
        Registry(without_skr)


def test_an_app_endpoint_on_a_sidecar_port_is_refused_by_spec_validate_and_every_rendering(repo, tmp_path):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["endpoints"][0]["port"] = REGISTRY.get("proxy").port("http")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    (tmp_path / "allow-get-hello.rego").write_text((repo / "examples/cleanroomhello-api/allow-get-hello.rego")
                                                   .read_text())
    variables = stand_in_endpoints(EMULATION_VAR)
    with pytest.raises(SpecError, match=r"endpoints\[0\].port: 15002 is the port of the proxy \(http\) sidecar"):
        render_group(load_spec(spec_file, variables=variables))
    args = [arg for name, value in variables.items() for arg in ("--var", f"{name}={value}")]
    done = subprocess.run([sys.executable, "-m", "sidecars", "spec", "validate", str(spec_file), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "endpoints[0].port: 15002 is the port of the proxy (http) sidecar; choose another" in done.stdout


# --- the rules that keep it one model ------------------------------------------------------------------

def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_sidecar_port_is_written_outside_its_registry_entry():
    ports = {p.number for s in REGISTRY for p in s.ports}
    literal = re.compile(r"(?<![\w.])(" + "|".join(map(str, sorted(ports))) + r")(?![\w.])")
    found = [f"{path.relative_to(SIDECARS_DIR.parent)}:{n}: {line.strip()}"
             for path in _python_files(SIDECARS_DIR) if path.name != "sidecar.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if literal.search(line)]
    assert found == []


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(absolute module, line, at module level) of every `sidecars` import in `path`."""
    parts = list(path.relative_to(SIDECARS_DIR.parent).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.startswith("sidecars"):
                for alias in node.names:
                    found.append((f"{module}.{alias.name}" if not node.module else module, node.lineno,
                                  id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top) for a in node.names if a.name.startswith("sidecars")]
    return found


def test_a_sidecar_imports_common_never_another_sidecar():
    """A sidecar's runtime code talks to another sidecar only over its HTTP API. Its command-line front ends
    (`__main__.py` standalone options, `cli.py` and `commands.py`) may use the room model, which stands in
    for a room there."""
    names = set(REGISTRY.names)
    others = names | {"room", "localroom", "renderings", "emulators"}
    found = []
    for name in names:
        for path in _python_files(SIDECARS_DIR / name):
            if path.name in ("__main__.py", "cli.py", "commands.py"):
                continue
            for module, line, _ in _imports(path):
                target = module.split(".")[1] if "." in module else ""
                if target in others and target != name:
                    found.append(f"{path.relative_to(SIDECARS_DIR.parent)}:{line} imports {module}")
    assert found == []


def test_no_import_cycles_between_modules():
    """Module-level imports of the package form no cycle (a cycle forces imports into functions)."""
    graph: dict[str, set[str]] = {}
    modules = {}
    for path in _python_files(SIDECARS_DIR):
        rel = path.relative_to(SIDECARS_DIR.parent).with_suffix("").parts
        module = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        modules[module] = path
    for module, path in modules.items():
        edges = set()
        for target, _, top in _imports(path):
            if not top:
                continue
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.add(target)
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                parent = target.rpartition(".")[0]
                while parent:
                    if parent in modules and parent != module and not module.startswith(parent + "."):
                        edges.add(parent)
                    parent = parent.rpartition(".")[0]
        graph[module] = edges
    cycles = _cycles(graph)
    assert cycles == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_function_local_imports_say_what_start_up_cost_they_save():
    """An import inside a function is allowed only where it keeps a measured cost off start-up, and a
    `# lazy:` comment on it (or heading its block of imports) says which."""
    unmarked = []
    for path in _python_files(SIDECARS_DIR):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                above = node.lineno - 1
                block = [lines[node.lineno - 1]]
                while above > function.lineno and re.match(r"\s*(#|from |import |$)", lines[above - 1]):
                    block.append(lines[above - 1])
                    above -= 1
                if not any("# lazy:" in line for line in block):
                    where = f"{path.relative_to(SIDECARS_DIR.parent)}:{node.lineno}"
                    unmarked.append(f"{where}: {lines[node.lineno - 1].strip()}")
    assert sorted(set(unmarked)) == []


def test_every_sidecar_declares_what_its_death_does_and_the_launcher_watches_by_it(job_spec, tmp_path):
    """The failure policy is written once, in each record; the launcher's watchdog is configured from it, and a
    sidecar that says nothing fails closed."""
    policies = {s.name: s.on_failure for s in REGISTRY}
    assert {n for n, p in policies.items() if p is FailurePolicy.STOP_APP} == {
        "governance", "volumes", "proxy", "telemetry", "launcher"}
    assert {n for n, p in policies.items() if p is FailurePolicy.REPORT} == {"firewall", "skr", "identity"}
    launcher = REGISTRY.get("launcher").configure(Room(job_spec, Placement(run_dir=tmp_path), REGISTRY.layout()))
    # the firewall is an init container: its rules outlive it in the kernel, the launcher checks them there
    assert launcher.sidecar_failure_policies == {n: p.value for n, p in policies.items()
                                                 if n not in ("launcher", "firewall")}
    assert set(launcher.sidecar_failure_policies) == set(launcher.sidecar_status_urls)
    with REGISTRY.extended(TOY):
        assert REGISTRY.layout().failure_policies["toy"] == FailurePolicy.STOP_APP.value
