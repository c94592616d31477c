"""cleanroomhello-job, end to end on this machine (`make demo`).

Three parties: a publisher with customers and what they spent, a partner with its own customer list, and
a consumer who wants one number out: how many customers they share and what those spent. Nobody sees
anyone else's list, and the room sees the data only in clear text inside its attested boundary.

 1. start the local stand-ins (attestation, Key Vault, governance service, Entra, blob storage);
 2. build the app image and pin its digest in the spec; the data owners publish their data encrypted and
    pin its manifest (every object's name, size and digest) in the spec; the room's policy hash H = HOST_DATA;
 3. the members agree on the contract in CGS: clean-room policy = H, identities federated, contract CA on;
 4. each party creates a key (KEK) that is released only to a room with HOST_DATA = H and stores its data
    key wrapped with it (the consumer sets up the encrypted sink);
 5. `ccr room up --wait` runs the room: firewall, attestation, consent, key release, mounts, launch, exit;
    the room sees only the manifests' objects, and signs the sink's manifest with a key the CA endorsed;
 6. `ccr room down`; the consumer downloads the result, checks the room's signed manifest, decrypts, and
    compares it with the expected answer;
 7. the audit trail in CGS, its hash chain verified.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_support import ccr, contract_ca, contract_id, demo_arguments, leave_nothing_behind, say, step  # noqa: E402


def make_data(data_dir: Path) -> dict:
    """Deterministic sample lists, and the answer the job must produce (computed here, independently)."""
    rng = random.Random(20261124)
    everyone = [f"customer{i:04d}@example.com" for i in range(2000)]
    publisher = {email: rng.randint(1, 500) for email in rng.sample(everyone, 1200)}
    partner = set(rng.sample(everyone, 900))
    (data_dir / "publisher").mkdir(parents=True)
    (data_dir / "partner").mkdir(parents=True)
    (data_dir / "consumer").mkdir(parents=True)
    rows = sorted(publisher.items())
    for part, chunk in enumerate((rows[:600], rows[600:])):
        with open(data_dir / "publisher" / f"sales-{part}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "amount"])
            writer.writerows(chunk)
    (data_dir / "partner" / "crm").mkdir()
    with open(data_dir / "partner" / "crm" / "customers.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email"])
        writer.writerows([e.upper()] for e in sorted(partner))  # another party's spelling
    shared = set(publisher) & partner
    return {"overlap": len(shared), "overlap_spend": sum(publisher[e] for e in shared),
            "partner_customers": len(partner), "publisher_customers": len(publisher)}


@dataclass(frozen=True)
class PreparedRoom:
    """Everything the parties did before the room runs."""

    run: Path
    spec: Path
    endpoints: str
    host_data: str
    expected: dict


@dataclass(frozen=True)
class PartyVolume:
    """A party's volume of the room: a datasource it publishes FOLDER (under the run's data/) to, or its
    datasink; DEK_FILE (under members/) keeps the data key."""

    party: str
    volume: str
    folder: str
    dek_file: str
    source: bool = True


#: the room's volumes in spec.yaml: the data owners' sources, then the consumer's sink
VOLUMES = (PartyVolume("publisher", "publisher-input", "publisher", "publisher-dek.json"),
           PartyVolume("partner", "partner-input", "partner", "partner-dek.json"),
           PartyVolume("consumer", "consumer-output", "consumer", "consumer-dek.json", source=False))


@dataclass(frozen=True)
class LogSink:
    """The spec's telemetry log sink: PARTY's container, its data key in the vault as SECRET."""

    party: str
    container: str
    secret: str


def prepare(run: Path, spec_source: Path = HERE / "spec.yaml", volumes: tuple[PartyVolume, ...] = VOLUMES,
            log_sink: LogSink | None = None) -> PreparedRoom:
    """Steps 1-4: stand-ins, images, contract, keys and data, for spec.yaml or a variant of it (SPEC_SOURCE,
    whose volumes are VOLUMES and whose log sink, if any, LOG_SINK). The caller stops the stand-ins."""
    endpoints = str(run / "endpoints.json")
    spec = run / "spec.yaml"
    members = run / "members"
    step(1, "start the local stand-ins for Azure Attestation, Key Vault, CGS, Entra and blob storage")
    ccr("emulators", "start", "--run-dir", str(run))

    step(2, "build the app image and publish the data, pin both in the spec, compute the room's policy hash")
    shutil.copy(spec_source, spec)
    ccr("images", "build", "--sidecars")
    ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    expected = make_data(run / "data")
    for source in (v for v in volumes if v.source):
        # The data first: its manifest's hash is part of the spec, so of HOST_DATA, which the KEKs need.
        ccr("data", "publish", str(run / "data" / source.folder), "--spec", str(spec), "--volume", source.volume,
            "--endpoints", endpoints, "--dek-file", str(members / source.dek_file), "--data-only",
            "--pin", str(spec))
    host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints, capture=True).stdout.strip()
    say(f"   HOST_DATA = {host_data}")

    step(3, "the members agree on the contract in CGS (policy = HOST_DATA, identities federated)")
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members))

    step(4, "each party creates its key, bound to HOST_DATA, and stores its data key wrapped with it")
    for party in dict.fromkeys(v.party for v in volumes):
        ccr("keys", "create-kek", "--endpoints", endpoints, "--name", f"{party}-kek", "--host-data", host_data)
    for volume in volumes:
        # The data owners only wrap their key now; the consumer's empty folder sets up the sink's key.
        publishing = ["--key-only"] if volume.source else [str(run / "data" / volume.folder)]
        ccr("data", "publish", *publishing, "--spec", str(spec), "--volume", volume.volume,
            "--endpoints", endpoints, "--dek-file", str(members / volume.dek_file))
    if log_sink is not None:
        vault = json.loads(Path(endpoints).read_text())["keyvault_url"]
        (run / "empty").mkdir(exist_ok=True)
        ccr("data", "publish", str(run / "empty"), "--container", log_sink.container, "--secret", log_sink.secret,
            "--kek", f"{vault}/keys/{log_sink.party}-kek", "--endpoints", endpoints,
            "--dek-file", str(members / f"{log_sink.container}-dek.json"))
    return PreparedRoom(run, spec, endpoints, host_data, expected)


def main(argv: list[str] | None = None) -> int:
    run, where = demo_arguments(__doc__, "ccr-job-demo-", argv)
    try:
        room = prepare(run)

        step(5, "run the room until the job exits")
        where.up(room.spec, room.endpoints, wait=True)

        step(6, "stop the room; the consumer checks the room's signed manifest and decrypts the result")
        where.down()
        ca = contract_ca(room.spec, room.endpoints, run / "members" / "consumer", run / "members" / "contract-ca.pem")
        ccr("data", "download", "-o", str(run / "result"), "--spec", str(room.spec), "--volume", "consumer-output",
            "--endpoints", room.endpoints, "--dek-file", str(run / "members" / "consumer-dek.json"),
            "--contract-ca", str(ca))
        result = json.loads((run / "result" / "result.json").read_text())
        say(f"   result:   {json.dumps(result, sort_keys=True)}")
        say(f"   expected: {json.dumps(room.expected, sort_keys=True)}")
        if result != room.expected:
            say("demo: the result differs from the expected answer")
            return 1
        say("   the room's answer is the expected one")

        step(7, "the audit trail in CGS (hash chain verified)")
        ccr("governance", "events", "list", contract_id(room.spec), "--endpoints", room.endpoints, "--identity",
            str(run / "members" / "consumer"))
        say(f"\nDemo done. Everything is in {run}")
        return 0
    finally:
        leave_nothing_behind(run, where)


if __name__ == "__main__":
    sys.exit(main())
