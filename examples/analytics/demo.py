"""The analytics clean room, end to end on this machine (`make demo-analytics`, root).

Northwind (a retailer) and woodgrove (a bank) each publish a dataset; woodgrove wants to know how its
customers' age bands spend at northwind, without either party seeing the other's rows. Spark SQL runs
inside the room over both encrypted datasets; only the result, encrypted to woodgrove's key, leaves it.

 1. start the local stand-ins (attestation, Key Vault, CGS, Entra, blob storage);
 2. build the analytics app's image (Spark on OpenJDK 17) and pin it; generate the data (northwind: CSV in
    two date folders; woodgrove: Parquet), encrypt and upload it, pin its manifests; the room's policy hash;
 3. the members agree on the contract in CGS (policy = HOST_DATA, identities federated, contract CA);
 4. each party's key (KEK) bound to HOST_DATA wraps its data key; woodgrove sets up its encrypted sink;
 5. the dataset documents go to CGS, each proposed and accepted by its owner alone; three queries:
    spend-by-age (woodgrove proposes, northwind approves), segment-mix (northwind proposes, woodgrove has
    not approved), spend-by-city (approved; one of its cities has fewer sales than northwind's threshold);
 6. `ccr room up`: the app starts its Spark session before the first request and serves the run API
    behind the proxy (TLS from the contract CA, only the run API's routes, every request signed by a member);
 7. woodgrove runs spend-by-age and waits for it; segment-mix is refused naming the missing approval;
    spend-by-city succeeds with the small city's group suppressed; category-mix-dp, over northwind's
    private dataset (a privacy policy: a budget of epsilon), runs with noise and spends from the budget in
    CGS's ledger, and northwind shows what is left (`ccr analytics budget show`);
 8. northwind reads every run that read its data in the audit trail; it revokes its dataset's consent and
    woodgrove's next run is refused, naming who revoked;
 9. `ccr room down`; woodgrove downloads the results (the room's signed sink manifest checked), decrypts
    them and compares them with the same SQL run in sqlite on the clear inputs.

`--variant analytics-s3` keeps woodgrove's data and results in an S3 bucket (the S3 stand-in, SSE; woodgrove's
AWS key pair a CGS secret the room reads after attestation), `--variant analytics-sse` keeps every volume on
Azure Blob with the service's own encryption; same story, same answer (examples/analytics/variants.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import data as demo_data  # noqa: E402
import variants  # noqa: E402
import yaml  # noqa: E402
from demo_support import REPO, ccr, contract_ca, contract_id, demo_arguments, leave_nothing_behind, say, step  # noqa: E402

DOCUMENTS = HERE / "documents"
DATASETS = {"northwind": "northwind-sales", "woodgrove": "woodgrove-customers"}
INPUT_VOLUMES = {"northwind": "northwind-input", "woodgrove": "woodgrove-input"}
SINK = "woodgrove-output"
#: query id -> (who proposes it, who else approves it)
QUERIES = {
    "spend-by-age": ("woodgrove", ("northwind",)),
    "segment-mix": ("northwind", ()),            # woodgrove, an owner of its input, never approves
    "spend-by-city": ("woodgrove", ("northwind",)),
    "category-mix-dp": ("woodgrove", ("northwind",)),
}
#: northwind's second document over the same files: private queries only, each spending epsilon from a budget
PRIVATE_DATASET = "northwind-sales-dp"
PRIVATE_QUERY = "category-mix-dp"
#: northwind's aggregation threshold (its dataset document): the strictest of the two
THRESHOLD = json.loads((DOCUMENTS / "northwind-sales.dataset.json").read_text())["aggregationThreshold"]
APP_PORT = 8080
#: the app answers once its Spark session is up (a JVM start): how long a member waits for the first answer
APP_READY_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class PreparedRoom:
    """Everything the parties did before the room runs."""

    run: Path
    spec: Path
    endpoints: str
    members: Path
    host_data: str
    data: demo_data.DemoData
    #: the dataset and query documents of the variant (examples/analytics/variants.py)
    documents: Path = DOCUMENTS
    #: what the documents' ids begin with in CGS, where ids are global: "" for the demo's own stand-ins, the
    #: room's name when it shares a governance service with other rooms of this demo (the system tests)
    prefix: str = ""

    def id(self, name: str) -> str:
        """A dataset's or query's id in CGS (`name` as documents/ names it)."""
        return f"{self.prefix}{name}"

    @property
    def contract(self) -> str:
        return contract_id(self.spec)

    def identity(self, member: str) -> str:
        return str(self.members / member)

    def governance(self, member: str) -> tuple[str, ...]:
        """The connection options of a member's `ccr analytics` command."""
        return ("--endpoints", self.endpoints, "--identity", self.identity(member), "--contract", self.contract)


def prepare(run: Path, stand_ins: Path | None = None, variant: str = "analytics",
            name: str | None = None) -> PreparedRoom:
    """Steps 1-5: stand-ins (started in `run` unless `stand_ins` holds running ones), image, data, contract,
    keys, documents, for the storage `variant` (the room named `name`, default the variant's). The caller
    stops stand-ins it had started (`leave_nothing_behind`)."""
    endpoints = str((stand_ins or run) / "endpoints.json")
    members = (stand_ins or run) / "members"
    spec = run / "spec.yaml"
    if stand_ins is None:
        step(1, "start the local stand-ins for Azure Attestation, Key Vault, CGS, Entra, blob storage and S3")
        ccr("emulators", "start", "--run-dir", str(run))

    step(2, "build and pin the analytics image; generate, encrypt and publish the data, pin its manifests")
    woodgrove = "woodgrove"
    if variant == "analytics-s3":
        woodgrove = member_id(members, "woodgrove")  # the spec names woodgrove's CGS secret: MEMBERID_NAME
        # Woodgrove's own AWS credentials in its shell (boto3's chain) publish and download its S3 data; the
        # room never sees them (it reads the key pair woodgrove gives it through CGS).
        for field, value in variants.stand_in_key_pair("woodgrove-owner").items():
            os.environ[f"AWS_{field.upper()}"] = value
    spec_data = variants.variant_spec(yaml.safe_load((HERE / "spec.yaml").read_text()), variant,
                                      woodgrove_member_id=woodgrove, name=name)
    if variant == "analytics" and name is None:
        shutil.copy(HERE / "spec.yaml", spec)  # as written, with its comments
    else:
        say(f"   variant {variant}: " + ", ".join(
            f"{v['name']} on {v['store'].get('kind', 'azure_blob')} ({v['encryption']['mode']})"
            for v in [*spec_data["datasources"], *spec_data["datasinks"]]))
        spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))
    prefix = f"{name}-" if name else ""
    documents = (variants.write_documents(DOCUMENTS, spec_data, run / "variant-documents", prefix=prefix)
                 if spec_data["name"] != "analytics" else DOCUMENTS)
    keyless = variants.sse_volumes(spec_data)
    shutil.copy(HERE / "allow-analytics.rego", run / "allow-analytics.rego")
    if stand_ins is None:  # whoever started the stand-ins built the sidecar images (tests/system/conftest.py)
        ccr("images", "build", "--sidecars")
    ccr("images", "build", "ccr-analytics", "--pin", str(spec))
    data = demo_data.generate()
    demo_data.write(data, run / "data")
    for party, volume in INPUT_VOLUMES.items():
        # The data first: its manifest's hash is part of the spec, so of HOST_DATA, which the KEKs need.
        ccr("data", "publish", str(run / "data" / party), "--spec", str(spec), "--volume", volume,
            "--endpoints", endpoints, "--dek-file", str(members / f"{volume}-dek.json"), "--data-only",
            "--pin", str(spec))
    host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints, capture=True).stdout.strip()
    say(f"   HOST_DATA = {host_data}")

    step(3, "the members agree on the contract in CGS (policy = HOST_DATA, identities federated, contract CA)")
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members))

    if variant == "analytics-s3":
        # The room reads it from CGS only once attested; it never appears in the spec, the template or a log.
        credentials = members / f"{variants.AWS_SECRET}.json"
        credentials.write_text(json.dumps(variants.stand_in_key_pair("woodgrove")))
        credentials.chmod(0o600)
        ccr("governance", "secret", "set", contract_id(spec), variants.AWS_SECRET, "--value-file", str(credentials),
            "--endpoints", endpoints, "--identity", str(members / "woodgrove"))

    step(4, "each party's key, bound to HOST_DATA, wraps its data key; woodgrove sets up its sink")
    keks = {v["encryption"]["key"]["kek_name"] for v in [*spec_data["datasources"], *spec_data["datasinks"]]
            if v["name"] not in keyless}
    for kek in sorted(keks):  # an SSE volume has no key of ours: nothing to wrap, nothing to release
        ccr("keys", "create-kek", "--endpoints", endpoints, "--name", kek, "--host-data", host_data)
    for volume in INPUT_VOLUMES.values():
        if volume in keyless:
            continue
        ccr("data", "publish", "--key-only", "--spec", str(spec), "--volume", volume, "--endpoints", endpoints,
            "--dek-file", str(members / f"{volume}-dek.json"))
    (run / "empty").mkdir(exist_ok=True)
    ccr("data", "publish", str(run / "empty"), "--spec", str(spec), "--volume", SINK, "--endpoints", endpoints,
        "--dek-file", str(members / f"{SINK}-dek.json"))

    room = PreparedRoom(run, spec, endpoints, members, host_data, data, documents, prefix)
    step(5, "the datasets and the queries in CGS: each query approved by the owners of the data it reads")
    publish_documents(room)
    return room


def member_id(members: Path, name: str) -> str:
    """The member's CGS id, its identity created first unless `members` holds it (`governance setup` keeps it)."""
    if not (members / name / "member.key").exists():
        ccr("governance", "member", "create", name, "-o", str(members / name))
    from sidecars.common.memberauth import MemberIdentity

    return MemberIdentity.load(members / name).member_id


def publish_documents(room: PreparedRoom) -> None:
    for owner, dataset in DATASETS.items():
        # Proposed and accepted by its owner alone: nobody else decides over a party's own data.
        ccr("analytics", "dataset", "publish", str(room.documents / f"{dataset}.dataset.json"),
            *room.governance(owner))
    ccr("analytics", "dataset", "publish", str(room.documents / f"{PRIVATE_DATASET}.dataset.json"),
        *room.governance("northwind"))
    for query, (proposer, approvers) in QUERIES.items():
        ccr("analytics", "query", "propose", str(room.documents / f"{query}.query.json"), "--id", room.id(query),
            *room.governance(proposer))
        for member in approvers:
            ccr("analytics", "query", "vote", room.id(query), "accept", *room.governance(member))
    for query in QUERIES:
        ccr("analytics", "query", "show", room.id(query), *room.governance("woodgrove"))


def run_query(room: PreparedRoom, address: str, ca: Path, member: str, query: str, run_id: str,
              *extra: str) -> tuple[int, str]:
    """`ccr analytics run QUERY --wait` as `member`: its exit code and what it printed."""
    args = ("analytics", "run", query, "--run-id", run_id, "--wait", "--timeout", str(RUN_TIMEOUT_S),
            "--url", f"https://{address}:{APP_PORT}", "--contract-ca", str(ca), "--identity", room.identity(member),
            *extra)
    say(f"$ ccr {' '.join(args)}")
    # the refusal's one line is on stderr: the demo shows it and checks what it names
    result = subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, text=True, capture_output=True)
    for line in (result.stdout + result.stderr).splitlines():
        say(f"   {line}")
    return result.returncode, result.stdout + result.stderr


def run_record(room: PreparedRoom, address: str, ca: Path, member: str, run_id: str) -> dict:
    """The run as `ccr analytics runs --run ID` shows it (JSON)."""
    shown = ccr("analytics", "runs", "--run", run_id, "--url", f"https://{address}:{APP_PORT}",
                "--contract-ca", str(ca), "--identity", room.identity(member), capture=True).stdout
    return json.loads(shown)


def wait_until_serving(room: PreparedRoom, address: str, ca: Path) -> float:
    """Seconds until the app answers a member (its Spark session starts before it serves)."""
    started = time.monotonic()
    while True:
        probe = ccr("analytics", "runs", "--query", room.id("spend-by-age"), "--url", f"https://{address}:{APP_PORT}",
                    "--contract-ca", str(ca), "--identity", room.identity("woodgrove"), capture=True, check=False,
                    echo=False)
        if probe.returncode == 0:
            return time.monotonic() - started
        if time.monotonic() - started > APP_READY_TIMEOUT_S:
            raise SystemExit(f"demo: the analytics app did not answer within {APP_READY_TIMEOUT_S:g} s")
        time.sleep(1)


def audit_events(room: PreparedRoom, member: str) -> list[dict]:
    """The app's run events in the contract's audit trail, as a member lists them (`ccr governance events list`
    verifies the whole hash chain and fails otherwise)."""
    shown = ccr("governance", "events", "list", room.contract, "--endpoints", room.endpoints, "--identity",
                room.identity(member), "--json", capture=True, echo=False).stdout
    events, _ = json.JSONDecoder().raw_decode(shown)  # the JSON list, then the line saying the chain is intact
    data = [event.get("data") for event in events]
    return [item for item in data if isinstance(item, dict) and str(item.get("event", "")).startswith("analytics.run.")]


def check(condition: bool, problem: str) -> None:
    if not condition:
        raise SystemExit(f"demo: {problem}")


def story(room: PreparedRoom, where, ca: Path) -> Path:
    """Steps 7-9 on a room that is up: woodgrove's runs (one approved, one missing woodgrove's approval, one
    below the threshold), northwind's audit trail and revocation, then the room down and the results checked
    against sqlite. Returns the folder of the decrypted sink. Raises SystemExit naming what went wrong."""
    address = where.address
    step(7, "woodgrove runs its queries through the room's API")
    code, _ = run_query(room, address, ca, "woodgrove", room.id("spend-by-age"), "spend-by-age-1")
    check(code == 0, "spend-by-age did not succeed")
    code, out = run_query(room, address, ca, "woodgrove", room.id("segment-mix"), "segment-mix-1")
    check(code != 0 and "is not an accepted query" in out, "segment-mix ran without woodgrove's approval")
    # The room reads accepted documents only; whose accept is missing is CGS's to say, to a member.
    shown = ccr("analytics", "query", "show", room.id("segment-mix"), *room.governance("woodgrove"),
                capture=True).stdout
    missing = [line.strip() for line in shown.splitlines() if line.strip().startswith(("owners:", "approval:"))]
    for line in missing:
        say(f"   {line}")
    check(any("woodgrove missing" in line for line in missing), "query show does not name woodgrove")
    say("   segment-mix refused: woodgrove, an owner of the data it reads, has not approved it")
    code, _ = run_query(room, address, ca, "woodgrove", room.id("spend-by-city"), "spend-by-city-1")
    check(code == 0, "spend-by-city did not succeed")
    city_run = run_record(room, address, ca, "woodgrove", "spend-by-city-1")
    say(f"   spend-by-city: {city_run.get('rowsWritten')} rows written, "
        f"{city_run.get('groupsSuppressed')} group(s) suppressed by northwind's threshold K={THRESHOLD}")
    check(city_run.get("groupsSuppressed", 0) >= 1, "no group of spend-by-city was suppressed")
    timings = run_record(room, address, ca, "woodgrove", "spend-by-age-1").get("timings", {})
    say("   spend-by-age timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(timings.items())))
    private_query(room, address, ca)

    step(8, "northwind reads the runs that read its data in the audit trail, then revokes its consent")
    say(f"$ ccr governance events list {room.contract} --json (the analytics runs)")
    for event in audit_events(room, "northwind"):
        if room.id(DATASETS["northwind"]) in event.get("datasets", []) or \
                event.get("event") == "analytics.run.refused":
            say("   " + json.dumps(event, sort_keys=True))
    ccr("analytics", "dataset", "revoke", room.id(DATASETS["northwind"]), *room.governance("northwind"))
    code, out = run_query(room, address, ca, "woodgrove", room.id("spend-by-age"), "spend-by-age-2")
    check(code != 0 and "northwind" in out, "a query over a revoked dataset ran")
    say("   spend-by-age refused after northwind revoked its dataset")

    step(9, "stop the room; woodgrove downloads the results and checks them against sqlite on the clear data")
    where.down()
    result_dir = room.run / "result"
    ccr("data", "download", "-o", str(result_dir), "--spec", str(room.spec), "--volume", SINK,
        "--endpoints", room.endpoints, "--dek-file", str(room.members / f"{SINK}-dek.json"),
        "--contract-ca", str(ca))
    written = sorted(str(p.relative_to(result_dir)) for p in result_dir.rglob("*") if p.is_file())
    say(f"   the sink holds: {', '.join(written)}")
    check(not any(name.startswith(("segment-mix-1", "spend-by-age-2")) for name in written),
          "a refused run wrote to the sink")
    private_result(room, result_dir)
    for query, run_id in (("spend-by-age", "spend-by-age-1"), ("spend-by-city", "spend-by-city-1")):
        sql = json.loads((DOCUMENTS / f"{query}.query.json").read_text())["segments"][0]["sql"]
        header, rows = demo_data.read_result_csv(result_dir / run_id / "segment-1.csv")
        expected = room.data.answer(sql, THRESHOLD)
        say(f"   {query}: {len(rows)} rows {header}; sqlite on the clear inputs: {len(expected)} rows "
            f"({room.data.groups(sql) - len(expected)} below K={THRESHOLD})")
        check(demo_data.comparable(rows) == demo_data.comparable(expected),
              f"{query}'s result differs from sqlite's:\n{rows}\n{expected}")
    say("   the room's answers are sqlite's")
    return result_dir


def private_query(room: PreparedRoom, address: str, ca: Path) -> None:
    """The private query: it runs with noise, spends its epsilon once (the same runId again spends nothing),
    its status counts released cells, not rows; northwind shows the budget left."""
    document = json.loads((room.documents / f"{PRIVATE_QUERY}.query.json").read_text())
    epsilon = document["segments"][0]["epsilon"]
    budget = json.loads((room.documents / f"{PRIVATE_DATASET}.dataset.json").read_text())["privacy"]["epsilonTotal"]
    for _attempt in range(2):
        code, _ = run_query(room, address, ca, "woodgrove", room.id(PRIVATE_QUERY), f"{PRIVATE_QUERY}-1")
        check(code == 0, f"{PRIVATE_QUERY} did not succeed")
    record = run_record(room, address, ca, "woodgrove", f"{PRIVATE_QUERY}-1")
    say(f"   {PRIVATE_QUERY}: {record.get('rowsWritten')} cells released (its public key set), epsilon "
        f"{record.get('epsilonSpent')} spent from {PRIVATE_DATASET}'s budget")
    check(record.get("epsilonSpent") == epsilon, "the private run did not record its epsilon")
    shown = ccr("analytics", "budget", "show", room.id(PRIVATE_DATASET), *room.governance("northwind"),
                capture=True).stdout
    for line in shown.splitlines():
        say(f"   {line}")
    check(f"epsilon {budget - epsilon:g} left of {budget:g}" in shown,
          "the budget does not show one spend (the replayed runId must not spend again)")


def private_result(room: PreparedRoom, result_dir: Path) -> None:
    """The private result beside the exact answer (which only this demo, holding the clear data, can compute):
    every public category is there, absent ones too, each count and sum with noise."""
    sql = json.loads((room.documents / f"{PRIVATE_QUERY}.query.json").read_text())["segments"][0]["sql"]
    header, rows = demo_data.read_result_csv(result_dir / f"{PRIVATE_QUERY}-1" / "segment-1.csv")
    exact = {row[0]: row[1] for row in room.data.answer(sql, 1)}
    say(f"   {PRIVATE_QUERY} {header} (noisy; exact purchase counts beside them, before contribution bounding):")
    for row in rows:
        say(f"      {row}   exact purchases: {exact.get(row[0], 0)}")
    check(sorted(str(row[0]) for row in rows) == ["books", "garden", "kitchen", "music", "toys"],
          f"{PRIVATE_QUERY} did not release exactly its public categories")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    variant = "analytics"
    if "--variant" in args:  # the demo's own option; the rest are every demo's (demo_support.demo_arguments)
        at = args.index("--variant")
        if at + 1 >= len(args) or args[at + 1] not in variants.VARIANTS:
            raise SystemExit(f"demo: --variant takes one of {', '.join(variants.VARIANTS)}")
        variant = args[at + 1]
        del args[at:at + 2]
    run, where = demo_arguments(__doc__, f"ccr-{variant}-demo-", args)
    if where.tls_name:
        # `ccr analytics run` checks the room's certificate against the address it calls; a C-ACI template
        # cannot name the group's address in it (demo_support.SimulatedAci), and the command has no other name
        raise SystemExit("demo: --aci is not supported by the analytics demo (the run API is called by address)")
    try:
        room = prepare(run, variant=variant)
        ca = contract_ca(room.spec, room.endpoints, room.members / "woodgrove", room.members / "contract-ca.pem")

        step(6, "run the room: the analytics app starts Spark, then serves the run API behind the proxy")
        where.up(room.spec, room.endpoints)
        say(f"   the app answered {wait_until_serving(room, where.address, ca):.1f} s after `ccr room up` returned")

        story(room, where, ca)
        say(f"\nDemo done. Everything is in {run}")
        return 0
    finally:
        leave_nothing_behind(run, where)


if __name__ == "__main__":
    sys.exit(main())
