"""cleanroomhello-api, end to end on this machine: an API app behind the room's proxy.

 1. start the local stand-ins; build the app image and pin it;
 2. the members agree on the contract (policy = the room's policy hash H), enable the contract CA and the
    logging option;
 3. the consumer's key (bound to H) and encrypted log sink;
 4. `ccr room up`: the app serves on port 8080 inside the room; only the proxy is reachable from outside;
 5. a client outside the room calls it over TLS, verifying the room's certificate against the contract
    CA: `GET /hello` is allowed by the API policy, `GET /secret` is denied (403);
 6. the app's output, exported with consent and decrypted by the consumer, shows the denied request
    never reached it;
 7. a member revokes execution consent: the room stops the app within the consent poll interval;
 8. `ccr room down`.
"""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_support import ccr, contract_id, demo_arguments, leave_nothing_behind, say, step  # noqa: E402

MEMBERS = ("publisher", "consumer")
STOP_TIMEOUT_S = 30


#: how long a client waits for the app's server behind the proxy to answer
APP_ANSWER_TIMEOUT_S = 60


def enable_contract_ca(spec: Path, endpoints: str, members: Path) -> Path:
    """Every member votes the CA proposal; returns the CA certificate clients will trust."""
    contract = contract_id(spec)
    vote_proposal(("governance", "ca", "enable", contract), endpoints, members)
    # As in CGS, the CA has no key until a member asks for it, once enabling it was accepted.
    ccr("governance", "ca", "generate-key", contract, "--endpoints", endpoints, "--identity", str(members / MEMBERS[0]))
    ca_pem = ccr("governance", "ca", "show", contract, "--endpoints", endpoints,
                 "--identity", str(members / MEMBERS[0]), capture=True).stdout
    ca_file = members / "contract-ca.pem"
    ca_file.write_text(ca_pem)
    return ca_file


def log_dek_file(members: Path) -> Path:
    return members / "consumer-logs-dek.json"


def vote_proposal(command: tuple[str, ...], endpoints: str, members: Path) -> None:
    """The first member proposes (and votes accept), the others vote accept."""
    proposal = ccr(*command, "--endpoints", endpoints, "--identity", str(members / MEMBERS[0]),
                   capture=True).stdout
    say(proposal.rstrip())
    for member in MEMBERS[1:]:
        ccr("governance", "proposal", "vote", proposal.split()[1], "--endpoints", endpoints, "--identity",
            str(members / member))


def main(argv: list[str] | None = None) -> int:
    run, where = demo_arguments(__doc__, "ccr-api-demo-", argv)
    endpoints = str(run / "endpoints.json")
    spec = run / "spec.yaml"
    members = run / "members"
    try:
        step(1, "start the stand-ins, build and pin the app image, compute the policy hash")
        ccr("emulators", "start", "--run-dir", str(run))
        shutil.copy(HERE / "spec.yaml", spec)
        shutil.copy(HERE / "allow-get-hello.rego", run / "allow-get-hello.rego")
        ccr("images", "build", "--sidecars")
        ccr("images", "build", "cleanroomhello-api", "--pin", str(spec))

        step(2, "the members agree on the contract and enable the contract CA")
        ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members))
        ca_file = enable_contract_ca(spec, endpoints, members)
        vote_proposal(("governance", "logging", "enable", contract_id(spec)), endpoints, members)

        step(3, "the consumer sets up the encrypted log sink, its key bound to the room's policy hash")
        host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints,
                        capture=True).stdout.strip()
        ccr("keys", "create-kek", "--endpoints", endpoints, "--name", "consumer-kek", "--host-data", host_data)
        vault = json.loads(Path(endpoints).read_text())["keyvault_url"]
        (run / "empty").mkdir(exist_ok=True)
        ccr("data", "publish", str(run / "empty"), "--container", "consumer-logs", "--secret", "consumer-logs-dek",
            "--kek", f"{vault}/keys/consumer-kek", "--endpoints", endpoints, "--dek-file", str(log_dek_file(members)))

        step(4, "run the room")
        where.up(spec, endpoints)
        url = f"https://{where.address}:8080"

        step(5, f"a client outside the room calls {url}, trusting only the contract CA")
        client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), timeout=10)
        tls = {"sni_hostname": where.tls_name} if where.tls_name else {}
        if where.tls_name:
            say(f"   (the group's address is not in its certificate: checking the name {where.tls_name!r})")
        # The app's server may still be starting when its container runs (a client of a new ACI group retries
        # too): the first answer that is not Envoy's "no upstream yet" counts.
        deadline = time.monotonic() + APP_ANSWER_TIMEOUT_S
        while (allowed := client.get(f"{url}/hello", extensions=tls)).status_code == 503 and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        say(f"   GET /hello  -> {allowed.status_code} {allowed.text.strip()}")
        denied = client.get(f"{url}/secret", extensions=tls)
        say(f"   GET /secret -> {denied.status_code} {denied.text.strip()[:120]}")

        step(6, "the app's output, exported with the members' logging consent, decrypted by the consumer")
        where.export_logs()
        ccr("logs", "download", "--spec", str(spec), "--endpoints", endpoints, "--dek-file",
            str(log_dek_file(members)), "-o", str(run / "app-logs"))
        shown = ccr("logs", "show", str(run / "app-logs"), capture=True).stdout
        received = [line.strip() for line in shown.splitlines() if "received " in line]
        say("   the app received: " + "; ".join(received))
        if allowed.status_code != 200 or denied.status_code != 403 or not received or \
                any("/secret" in line for line in received):
            say("demo: the proxy did not apply the API policy as expected")
            return 1

        step(7, "the consumer revokes execution consent; the room stops the app")
        ccr("governance", "consent", "disable", contract_id(spec), "--endpoints", endpoints,
            "--identity", str(members / "consumer"))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        status = where.app_status()
        while status == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = where.app_status()
        say(f"   app status: {status}")
        if status == "running":
            say(f"demo: the app still runs {STOP_TIMEOUT_S} s after consent was revoked")
            return 1

        step(8, "stop the room")
        where.down()
        say(f"\nDemo done. Everything is in {run}")
        return 0
    finally:
        leave_nothing_behind(run, where)


if __name__ == "__main__":
    sys.exit(main())
