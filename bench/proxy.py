"""Proxy cost, measured with wrk against a small app on loopback, one run:

  direct            wrk → app (plain HTTP)
  envoy             wrk → Envoy (TLS 1.3, the inbound listener) → app, no authorization filter
  ext_authz/*       … + the Python ext_authz server evaluating the policy in OPA
  rbac/*            … + the policy compiled into Envoy's RBAC filter (what the proxy runs by default for
                    policies in the compilable subset: method and path conditions)
  for two policies: allow-all and only `GET /hello`; and, on the ext_authz path, the body policy
  policies/allow-post-json-schema.rego (JSON body against a schema + a header) with `POST /orders`:
  `body-policy` sends one body again and again (decision cache hits), `body-policy-distinct` a new body
  on every request (every decision evaluated in OPA); `direct/post` and `envoy/post` are its baselines.

All configurations run side by side and are measured in interleaved rounds (median of ROUNDS), so load
from other work on a shared box hits them alike. Figures: proxy_p50_added_ms (the default
path for `GET /hello` minus direct, 1 connection; goal ≤ 0.5),
proxy_rps_ratio (that path ÷ Envoy without authz, 16 connections; goal ≥ 0.8), and the same two for the
Python ext_authz path (`*_ext_authz`), which every other policy (body, headers, query, …) takes, and
for the body policy (`*_body_policy`, `*_body_policy_distinct`). `proxy_p50_authz_over_envoy_ms_*` is
the latency the authorization adds over Envoy alone (goal ≤ 0.3 ms). `proxy_cpu_ratio_*` is Envoy alone's
CPU time per request ÷ that path's (Envoy, authorization server and workers, app; 16 connections): the
throughput ratio the room would see with the CPU to itself, steadier than req/s on a shared box. Each
configuration's CPU per request is also printed per process (app, Envoy, authorization server), and
`proxy_cpu_us_*` keep the shares of the new-body path: where its time goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

from sidecars.common.process import ManagedProcess, file_exists, http_ok
from sidecars.common.tls import LocalCA
from sidecars.proxy.envoy import envoy_argv, render_bootstrap
from sidecars.proxy.model import InboundEndpoint, ProxyModel
from sidecars.proxy.runtime import ProxyRuntime, plan

DURATION_S = 2
# Other work on a shared box comes and goes: every configuration runs side by side, measured in
# interleaved rounds, and each figure is the median over the rounds, so a busy moment hits all alike.
ROUNDS = 3
POLICIES = {
    "allow-all": "package envoy.authz\n\nallow := true\n",
    "get-hello": (Path(__file__).resolve().parent.parent / "policies" / "allow-get-hello.rego").read_text(),
}
BODY_POLICY = (Path(__file__).resolve().parent.parent / "policies" / "allow-post-json-schema.rego").read_text()
WRK_POST = """wrk.method = "POST"
wrk.body = '{"item": "widget", "quantity": 3, "note": "leave at door"}'
wrk.headers["Content-Type"] = "application/json"
"""
# A body no request has sent before (a per-thread id, a random run tag and a counter): no cache hit.
WRK_POST_DISTINCT = """local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) math.randomseed(os.time() * 100 + tid); tag = math.random(1000000000); counter = 0 end
function request()
  counter = counter + 1
  local body = string.format('{"item": "widget-%d-%d-%d", "quantity": %d, "note": "n"}',
                             tid, tag, counter, counter % 100 + 1)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
FREE_PORTS = dict(inbound_address="127.0.0.1", inbound_port=0, egress_http_port=0, egress_tcp_port=0,
                  admin_port=0, authz_port=0, extproc_port=0)


def _cpu_seconds(pids: list[int]) -> list[float]:
    """User + system CPU time each process has used (every thread), from /proc."""
    used = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime, stime (proc(5))
    return used


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _wrk(target: tuple[str, str | None], connections: int, duration: int, log_dir: Path) -> tuple[float, float]:
    """(requests/s, p50 latency ms) from one wrk run against (url, Lua script or None)."""
    url, script = target
    threads = 1 if connections == 1 else 2
    proc = ManagedProcess(f"wrk-{connections}", ["wrk", "-t", str(threads), "-c", str(connections),
                                                 "-d", f"{duration}s", "--latency",
                                                 *(["-s", script] if script else []), url],
                          log_path=log_dir / f"wrk-{connections}.log")
    proc.log_path.unlink(missing_ok=True)
    proc.start()
    proc.popen.wait(timeout=duration + 30)
    out = proc.output()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rps or not p50 or errors:
        raise RuntimeError(f"wrk against {url} failed:\n{out}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)]
    return float(rps.group(1)), float(p50.group(1)) * scale


def _measure_rounds(urls: dict[str, tuple[str, str | None]], pids: dict[str, dict[str, list[int]]],
                    log_dir: Path) -> dict[str, dict[str, float]]:
    """Latency and throughput of each configuration, and the CPU time its processes (Envoy, the
    authorization server and its workers, the app) spend per request at 16 connections: on a box shared
    with other work, throughput follows the share of the CPU we get, CPU per request much less so.
    `pids` names each configuration's processes by role, and the CPU per request is printed per role too:
    the profile of where a configuration's time goes."""
    for url in urls.values():
        _wrk(url, 16, 1, log_dir)  # warm-up: connection pools, OPA's prepared query
    samples: dict[str, list[tuple[float, ...]]] = {name: [] for name in urls}
    for _ in range(ROUNDS):
        for name, url in urls.items():
            rps1, p50_1 = _wrk(url, 1, DURATION_S, log_dir)
            roles = pids[name]
            cpu_before = [sum(_cpu_seconds(role_pids)) for role_pids in roles.values()]
            rps16, p50_16 = _wrk(url, 16, DURATION_S, log_dir)
            cpu_after = [sum(_cpu_seconds(role_pids)) for role_pids in roles.values()]
            per_role = [(after - before) / (rps16 * DURATION_S) * 1e6
                        for before, after in zip(cpu_before, cpu_after, strict=True)]
            samples[name].append((p50_1, rps1, p50_16, rps16, sum(per_role), *per_role))
    table = {}
    for name, runs in samples.items():
        p50_1, rps1, p50_16, rps16, cpu_us, *per_role = (statistics.median(column)
                                                          for column in zip(*runs, strict=True))
        by_role = dict(zip(pids[name], per_role, strict=True))
        table[name] = {"p50_1c_ms": p50_1, "rps_1c": rps1, "p50_16c_ms": p50_16, "rps_16c": rps16,
                       "cpu_us": cpu_us, **{f"cpu_us_{role}": us for role, us in by_role.items()}}
        shares = ", ".join(f"{role} {us:.0f}" for role, us in by_role.items())
        print(f"   {name:<30} 1 conn: p50 {p50_1:6.3f} ms {rps1:8.0f} req/s | "
              f"16 conns: p50 {p50_16:6.3f} ms {rps16:8.0f} req/s, {cpu_us:6.1f} us CPU/req ({shares})", flush=True)
    return table


def _envoy_without_authz(model: ProxyModel, run_dir: Path) -> ManagedProcess:
    bootstrap = render_bootstrap(model)
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []) + [listener.get("default_filter_chain") or {}]:
            for network_filter in chain.get("filters", []):
                config = network_filter["typed_config"]
                if "http_filters" in config:
                    config["http_filters"] = [f for f in config["http_filters"]
                                              if f["name"] == "envoy.filters.http.router"]
    path = run_dir / "envoy-bare.json"
    path.write_text(json.dumps(bootstrap))
    admin_file = run_dir / "envoy-bare-admin.txt"
    return ManagedProcess("envoy-bare", envoy_argv(path, admin_address_path=admin_file),
                          ready=lambda: admin_file.exists() and admin_file.read_text().strip() != ""
                          and http_ok(f"http://{admin_file.read_text().strip()}/ready")(),
                          log_path=run_dir / "envoy-bare.log")


def _inbound_port(admin_file: Path) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://{admin_file.read_text().strip()}/listeners?format=json") as resp:
        listeners = json.load(resp)["listener_statuses"]
    return next(x["local_address"]["socket_address"]["port_value"] for x in listeners if x["name"] == "inbound")


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="ccr-bench-proxy-") as tmp, contextlib.ExitStack() as stack:
        run_dir = Path(tmp)
        ready = run_dir / "app.ready"
        app = stack.enter_context(ManagedProcess(
            "hello-app", [sys.executable, "-m", "bench._hello_app", "--ready-file", str(ready)],
            ready=file_exists(ready), log_path=run_dir / "app.log"))
        app_port = json.loads(ready.read_text())["port"]
        tls = LocalCA.create(run_dir / "ca").issue_server_cert("room")
        post, post_distinct = run_dir / "post.lua", run_dir / "post-distinct.lua"
        post.write_text(WRK_POST)
        post_distinct.write_text(WRK_POST_DISTINCT)
        urls: dict[str, tuple[str, str | None]] = {"direct": (f"http://127.0.0.1:{app_port}/hello", None),
                                                   "direct/post": (f"http://127.0.0.1:{app_port}/orders", str(post))}

        def model(policy_name: str, source: str) -> ProxyModel:
            endpoint = InboundEndpoint("api", app_port, f"{policy_name}.rego", source)
            return ProxyModel(inbound=(endpoint,), inbound_tls=tls, **FREE_PORTS)

        bare = stack.enter_context(_envoy_without_authz(plan(model("allow-all", POLICIES["allow-all"])), run_dir))
        envoy_url = f"https://127.0.0.1:{_inbound_port(run_dir / 'envoy-bare-admin.txt')}"
        urls["envoy"] = (f"{envoy_url}/hello", None)
        urls["envoy/post"] = (f"{envoy_url}/orders", str(post))
        runtimes: dict[str, ProxyRuntime] = {}
        for mode in ("rbac", "ext_authz"):
            for policy, source in POLICIES.items():
                planned = plan(model(policy, source), use_rbac=mode == "rbac")
                assert planned.inbound[0].enforcement == mode
                runtime = stack.enter_context(ProxyRuntime(planned, run_dir / f"{mode}-{policy}", authz_workers=2))
                urls[f"{mode}/{policy}"] = (f"https://127.0.0.1:{runtime.ports.inbound}/hello", None)
                runtimes[f"{mode}/{policy}"] = runtime
        planned = plan(model("body-policy", BODY_POLICY))
        assert planned.inbound[0].enforcement == "ext_authz" and planned.inbound[0].needs_body
        runtime = stack.enter_context(ProxyRuntime(planned, run_dir / "ext_authz-body-policy", authz_workers=2))
        urls["ext_authz/body-policy"] = (f"https://127.0.0.1:{runtime.ports.inbound}/orders", str(post))
        urls["ext_authz/body-policy-distinct"] = (f"https://127.0.0.1:{runtime.ports.inbound}/orders",
                                                  str(post_distinct))
        runtimes["ext_authz/body-policy"] = runtimes["ext_authz/body-policy-distinct"] = runtime
        pids: dict[str, dict[str, list[int]]] = {name: {"app": [app.pid]} for name in urls}
        pids["envoy"] = pids["envoy/post"] = {"app": [app.pid], "envoy": [bare.pid]}
        for name, runtime in runtimes.items():
            assert runtime.envoy is not None and runtime.envoy.pid is not None
            pids[name] = {"app": [app.pid], "envoy": [runtime.envoy.pid]}
            if runtime.authz is not None and runtime.authz.pid is not None:
                pids[name]["authz"] = [runtime.authz.pid, *_children(runtime.authz.pid)]
        table = _measure_rounds(urls, pids, run_dir)
    direct, envoy = table["direct"], table["envoy"]
    post, envoy_post = table["direct/post"], table["envoy/post"]
    figures = {
        "proxy_p50_added_ms": table["rbac/get-hello"]["p50_1c_ms"] - direct["p50_1c_ms"],
        "proxy_rps_ratio": table["rbac/get-hello"]["rps_16c"] / envoy["rps_16c"],
        "proxy_p50_added_ms_ext_authz": table["ext_authz/get-hello"]["p50_1c_ms"] - direct["p50_1c_ms"],
        "proxy_rps_ratio_ext_authz": table["ext_authz/get-hello"]["rps_16c"] / envoy["rps_16c"],
        "proxy_rps_ratio_ext_authz_allow_all": table["ext_authz/allow-all"]["rps_16c"] / envoy["rps_16c"],
        "proxy_p50_added_ms_body_policy": table["ext_authz/body-policy"]["p50_1c_ms"] - post["p50_1c_ms"],
        "proxy_rps_ratio_body_policy": table["ext_authz/body-policy"]["rps_16c"] / envoy_post["rps_16c"],
        "proxy_p50_added_ms_body_policy_distinct":
            table["ext_authz/body-policy-distinct"]["p50_1c_ms"] - post["p50_1c_ms"],
        "proxy_rps_ratio_body_policy_distinct":
            table["ext_authz/body-policy-distinct"]["rps_16c"] / envoy_post["rps_16c"],
        "proxy_p50_authz_over_envoy_ms_ext_authz": table["ext_authz/get-hello"]["p50_1c_ms"] - envoy["p50_1c_ms"],
        "proxy_p50_authz_over_envoy_ms_body_policy":
            table["ext_authz/body-policy"]["p50_1c_ms"] - envoy_post["p50_1c_ms"],
        "proxy_p50_authz_over_envoy_ms_body_policy_distinct":
            table["ext_authz/body-policy-distinct"]["p50_1c_ms"] - envoy_post["p50_1c_ms"],
        # Envoy alone's CPU per request ÷ ours: the throughput ratio if the room had the CPU to itself.
        "proxy_cpu_ratio_ext_authz": envoy["cpu_us"] / table["ext_authz/get-hello"]["cpu_us"],
        "proxy_cpu_ratio_body_policy": envoy_post["cpu_us"] / table["ext_authz/body-policy"]["cpu_us"],
        "proxy_cpu_ratio_body_policy_distinct":
            envoy_post["cpu_us"] / table["ext_authz/body-policy-distinct"]["cpu_us"],
        # Where a request with a new body spends its CPU (µs), beside Envoy alone proxying the same POST.
        "proxy_cpu_us_envoy_post": envoy_post["cpu_us_envoy"],
        "proxy_cpu_us_body_policy_distinct_envoy": table["ext_authz/body-policy-distinct"]["cpu_us_envoy"],
        "proxy_cpu_us_body_policy_distinct_authz": table["ext_authz/body-policy-distinct"]["cpu_us_authz"],
        "proxy_envoy_p50_added_ms": envoy["p50_1c_ms"] - direct["p50_1c_ms"],
        "proxy_direct_rps": direct["rps_16c"],
        "proxy_envoy_rps": envoy["rps_16c"],
    }
    return figures
