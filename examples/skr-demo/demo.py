"""Secure key release, end to end on this machine.

1. Start the local stand-ins (attestation service, Key Vault, ...) with `ccr emulators start`.
2. A data owner creates a KEK that Key Vault releases only to a room whose CCE policy hash is H.
3. Start the skr sidecar on a mock SEV-SNP platform whose HOST_DATA is H and release the key through
   its API, as the room's volumes sidecar does; print the key's fingerprint.
4. Start a second skr whose platform reports another HOST_DATA: Key Vault refuses it.
5. Stop everything.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(HERE.parent))

from demo_support import ccr, say, step  # noqa: E402

from sidecars.common.jose import b64url_decode, b64url_encode, thumbprint  # noqa: E402
from sidecars.common.process import ManagedProcess  # noqa: E402


def start_skr(run: Path, name: str, host_data: str) -> tuple[ManagedProcess, str]:
    ready = run / f"{name}.ready.json"
    argv = [sys.executable, "-m", "sidecars.skr", "--port", "0", "--endpoints", str(run / "endpoints.json"),
            "--platform", "mock", "--host-data", host_data, "--ready-file", str(ready)]
    proc = ManagedProcess(name, argv, ready=ready.exists, ready_timeout=30, log_path=run / "logs" / f"{name}.log",
                          cwd=REPO).start()
    url = json.loads(ready.read_text())["url"]
    say(f"   {name} listening on {url} (mock platform, HOST_DATA {host_data[:16]}…)")
    return proc, url


def release(url: str, endpoints: dict) -> httpx.Response:
    body = {"maa_endpoint": endpoints["maa_endpoint"], "akv_endpoint": endpoints["keyvault_url"], "kid": "demo-kek"}
    say(f"   POST {url}/key/release {json.dumps(body)}")
    return httpx.post(f"{url}/key/release", json=body, timeout=60)


def vault_fingerprint(endpoints: dict) -> str:
    from azure.keyvault.keys import KeyClient

    from sidecars.common.devtokens import DevTokenCredential

    client = KeyClient(endpoints["keyvault_url"], DevTokenCredential.from_dir(endpoints["dev_tokens_dir"]),
                       connection_verify=endpoints["ca_bundle"], verify_challenge_resource=False)
    key = client.get_key("demo-kek").key
    return thumbprint({"kty": "RSA", "n": b64url_encode(key.n), "e": b64url_encode(key.e)})


def main() -> int:
    run = Path(tempfile.mkdtemp(prefix="ccr-skr-demo-"))
    policy = HERE / "cce-policy.rego"
    host_data = hashlib.sha256(policy.read_bytes()).hexdigest()
    other = hashlib.sha256(policy.read_bytes() + b"\n# one more line\n").hexdigest()
    started = False
    try:
        step(1, "start the local stand-ins for the Azure services (attestation, Key Vault, ...)")
        ccr("emulators", "start", "--run-dir", str(run))
        started = True
        endpoints = json.loads((run / "endpoints.json").read_text())

        step(2, f"the data owner creates a KEK bound to the room's policy hash H = {host_data}")
        ccr("keys", "create-kek", "--endpoints", str(run / "endpoints.json"), "--name", "demo-kek",
            "--cce-policy", str(policy.relative_to(REPO)))

        step(3, "a room whose platform reports HOST_DATA = H asks its skr sidecar for the key")
        skr, url = start_skr(run, "skr-good", host_data)
        with skr:
            began = time.perf_counter()
            answer = release(url, endpoints)
            elapsed = (time.perf_counter() - began) * 1000
        if answer.status_code != 200:
            say(f"   unexpected refusal {answer.status_code}: {answer.text}")
            return 1
        jwk = json.loads(answer.json()["key"])
        released = thumbprint({k: jwk[k] for k in ("kty", "n", "e")})
        bits = len(b64url_decode(jwk["n"])) * 8
        say(f"   released in {elapsed:.0f} ms (the first release also pays TLS handshakes and key fetches): "
            f"an RSA-{bits} private key")
        say(f"   fingerprint (RFC 7638 SHA-256 thumbprint of its public part): {released}")
        say(f"   the key Key Vault holds as demo-kek has fingerprint:           {vault_fingerprint(endpoints)}")

        step(4, "a room with another policy (HOST_DATA ≠ H) asks for the same key")
        skr, url = start_skr(run, "skr-other", other)
        with skr:
            refused = release(url, endpoints)
        say(f"   HTTP {refused.status_code}: {refused.json().get('error')}")
        if refused.status_code != 403 or "x-ms-sevsnpvm-hostdata" not in refused.text:
            say("   expected a 403 naming x-ms-sevsnpvm-hostdata")
            return 1
        say("   refused, as the owner's policy demands: no key material left Key Vault")
    finally:
        if started:
            step(5, "stop everything")
            ccr("emulators", "stop", "--run-dir", str(run))
    say(f"\nDemo done. Logs: {run}/logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
