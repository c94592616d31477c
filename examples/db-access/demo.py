"""db-access, end to end on this machine (`examples/db-access/run.sh`).

Two parties: a publisher whose orders are in its own PostgreSQL database, and a consumer who wants the
revenue per region, but only for regions with enough orders that no single customer shows. The database
stays where it is, outside the room; the room may reach it and nothing else, and gets its address and
password only once attested.

 1. start the local stand-ins (attestation, Key Vault, governance service, Entra, blob storage);
 2. the publisher starts its database: PostgreSQL (Debian's), on an address of its own (a veth link on
    this host, outside the room), TLS, password login only for a read-only role;
 3. the members create their identities (the publisher's names the secret the room will read);
 4. build the app image and pin its digest in the spec; the room's policy hash H = HOST_DATA;
 5. the members agree on the contract in CGS: clean-room policy = H, identities federated;
 6. the publisher keeps the database password in Key Vault, released only to a room with HOST_DATA = H,
    and the database configuration (address, role, CA, where the password is) as a CGS secret; the
    consumer creates its key and sets up the encrypted sink;
 7. `ccr room up --wait` runs the room: the app reads the secret, releases the password through skr, queries
    over TLS through the egress proxy, writes the aggregate to the sink;
 8. `ccr room down`; the consumer downloads and decrypts the result, which must equal the expected answer;
 9. the audit trail in CGS (hash chain verified).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_support import REPO, ccr, contract_ca, contract_id, demo_arguments, leave_nothing_behind, say, step  # noqa: E402,E501

sys.path.insert(0, str(REPO))
from sidecars.common.tls import LocalCA  # noqa: E402

DB_PORT = 5432
DB_NAME = "sales"
DB_ROLE = "cleanroom"
#: where rooms started by `ccr room up` have their outside address (sidecars/localroom/netns.py)
ROOM_ADDRESSES = "10.203.0.0/16"
MIN_ORDERS = 25  # as in spec.yaml


def sh(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(argv[:4])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def as_postgres(*argv: str, stdin: str | None = None) -> str:
    return sh("runuser", "-u", "postgres", "--", *argv, stdin=stdin)


def postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise SystemExit("demo: PostgreSQL is not installed (make setup installs Debian's postgresql)")
    return versions[-1].parent


def make_orders() -> tuple[list[tuple[str, str, int, int]], dict]:
    """Deterministic orders, and the answer the app must produce (computed here, independently)."""
    rng = random.Random(20261124)
    weights = {"north": 30, "south": 25, "east": 20, "west": 15, "central": 9, "islands": 1}
    products = {"tea": 450, "coffee": 1290, "cocoa": 799, "mate": 1100}
    orders = []
    for _ in range(1500):
        region = rng.choices(list(weights), weights=list(weights.values()))[0]
        product = rng.choice(list(products))
        orders.append((region, product, rng.randint(1, 12), products[product]))
    regions: dict[str, dict[str, int]] = {}
    for region, _product, quantity, price in orders:
        entry = regions.setdefault(region, {"orders": 0, "revenue_cents": 0})
        entry["orders"] += 1
        entry["revenue_cents"] += quantity * price
    expected = {"min_orders": MIN_ORDERS, "orders": len(orders),
                "regions": {r: v for r, v in sorted(regions.items()) if v["orders"] >= MIN_ORDERS}}
    return orders, expected


@dataclass
class Database:
    """The publisher's PostgreSQL server, outside the room: its own data folder, TLS, and an address on a
    veth link of this host that nothing else uses."""

    folder: Path
    link: str
    address: str
    ca_pem: str
    password: str

    @property
    def pgdata(self) -> Path:
        return self.folder / "pgdata"

    @classmethod
    def start(cls, orders: list[tuple[str, str, int, int]]) -> Database:
        bin_dir = postgres_bin()
        address = _free_address()
        link = f"ccrdb-{secrets.token_hex(2)}"
        # Not in the run folder: the server runs as the postgres user, which must be able to reach it.
        folder = Path(tempfile.mkdtemp(prefix="ccr-db-server-"))
        shutil.chown(folder, "postgres", "postgres")
        database = cls(folder, link, address, "", secrets.token_urlsafe(24))  # 32 characters
        try:
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", f"{link}p")
            sh("ip", "addr", "add", f"{address}/30", "dev", link)
            sh("ip", "link", "set", link, "up")
            sh("ip", "link", "set", f"{link}p", "up")
            as_postgres(str(bin_dir / "initdb"), "-D", str(database.pgdata), "-U", "postgres", "-E", "UTF8",
                        "--locale=C", "--auth-local=peer", "--auth-host=reject", "--no-instructions")
            database.ca_pem = database._tls(address)
            database._configure(address)
            as_postgres(str(bin_dir / "pg_ctl"), "-D", str(database.pgdata), "-l", str(folder / "server.log"),
                        "-w", "-t", "30", "start")
            database._seed(orders)
        except BaseException:
            database.stop()
            raise
        return database

    def _tls(self, address: str) -> str:
        ca = LocalCA.create(self.folder / "ca", name="publisher database CA")
        files = ca.issue_server_cert("database", hostnames=[address])
        for source, name in ((files.cert_file, "server.crt"), (files.key_file, "server.key")):
            target = self.pgdata / name
            shutil.copyfile(source, target)
            shutil.chown(target, "postgres", "postgres")
            target.chmod(0o600)
        shutil.rmtree(self.folder / "ca" / "server-database", ignore_errors=True)
        return ca.cert_file.read_text()

    def _configure(self, address: str) -> None:
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '{address}'\nport = {DB_PORT}\n"
                       f"unix_socket_directories = '{self.folder}'\nssl = on\n"
                       "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "password_encryption = 'scram-sha-256'\n")
        # Only the room's role, only over TLS, only from rooms' addresses; the admin only on the socket.
        (self.pgdata / "pg_hba.conf").write_text(
            "local all postgres peer\n"
            f"hostssl {DB_NAME} {DB_ROLE} {ROOM_ADDRESSES} scram-sha-256\n")

    def _seed(self, orders: list[tuple[str, str, int, int]]) -> None:
        rows = io.StringIO()
        csv.writer(rows, lineterminator="\n").writerows(orders)
        psql = ("psql", "-h", str(self.folder), "-p", str(DB_PORT), "-v", "ON_ERROR_STOP=1", "-q")
        # The password goes in on stdin, never on a command line.
        as_postgres(*psql, "-d", "postgres", stdin=f"CREATE ROLE {DB_ROLE} LOGIN PASSWORD '{self.password}';\n"
                                                     f"CREATE DATABASE {DB_NAME};\n")
        as_postgres(*psql, "-d", DB_NAME, stdin=(
            "CREATE TABLE orders (id serial PRIMARY KEY, region text NOT NULL, product text NOT NULL, "
            "quantity int NOT NULL, unit_price_cents int NOT NULL);\n"
            "COPY orders (region, product, quantity, unit_price_cents) FROM STDIN WITH (FORMAT csv);\n"
            f"{rows.getvalue()}\\.\n"
            f"GRANT SELECT ON orders TO {DB_ROLE};\n"))

    def config(self, vault_url: str, maa_endpoint: str) -> dict:
        """What the room reads from the CGS secret: everything but the password, and where that is."""
        return {"host": self.address, "port": DB_PORT, "database": DB_NAME, "user": DB_ROLE,
                "ca_certificate": self.ca_pem,
                "password": {"vault_url": vault_url, "kid": "db-password", "maa_endpoint": maa_endpoint}}

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(postgres_bin() / "pg_ctl"), "-D",
                            str(self.pgdata), "-m", "fast", "-w", "stop"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_address() -> str:
    used = {ipaddress.ip_interface(word).ip for word in sh("ip", "-4", "-o", "addr").split()
            if "/" in word and word[0].isdigit()}
    for index in range(256):
        candidate = ipaddress.ip_address(f"10.204.{index}.1")
        if candidate not in used:
            return str(candidate)
    raise SystemExit("demo: no free address in 10.204.0.0/16 for the database")


def member_id(members: Path, name: str) -> str:
    """Create the member's identity (or keep the one there) and return its CGS member id."""
    if not (members / name / "member.key").exists():
        ccr("governance", "member", "create", name, "-o", str(members / name))
    from sidecars.common.memberauth import MemberIdentity

    return MemberIdentity.load(members / name).member_id


def main(argv: list[str] | None = None) -> int:
    run, where = demo_arguments(__doc__, "ccr-db-demo-", argv)
    members, spec = run / "members", run / "spec.yaml"
    endpoints_file = str(run / "endpoints.json")
    database = None
    try:
        step(1, "start the local stand-ins for Azure Attestation, Key Vault, CGS, Entra and blob storage")
        ccr("emulators", "start", "--run-dir", str(run))
        endpoints = json.loads(Path(endpoints_file).read_text())

        step(2, "the publisher starts its PostgreSQL database outside the room (TLS, read-only role)")
        orders, expected = make_orders()
        database = Database.start(orders)
        say(f"   {len(orders)} orders in {DB_NAME} at {database.address}:{DB_PORT} (link {database.link})")

        step(3, "the members create their identities; the publisher's names the secret the room reads")
        secret_id = f"{member_id(members, 'publisher')}_db-config"
        member_id(members, "consumer")
        spec_vars = ("--var", f"db_host={database.address}", "--var", f"db_config_secret={secret_id}")
        say(f"   DB_CONFIG_SECRET = {secret_id}")

        step(4, "build the app image, pin its digest in the spec, compute the room's policy hash")
        shutil.copy(HERE / "spec.yaml", spec)
        ccr("images", "build", "--sidecars")
        ccr("images", "build", "db-access", "--pin", str(spec))
        host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints_file, *spec_vars,
                        capture=True).stdout.strip()
        say(f"   HOST_DATA = {host_data}")

        step(5, "the members agree on the contract in CGS (policy = HOST_DATA, identities federated)")
        ccr("governance", "setup", str(spec), "--endpoints", endpoints_file, "--members-dir", str(members),
            *spec_vars)

        step(6, "the publisher keeps the password in Key Vault (bound to HOST_DATA) and the database "
                "configuration in CGS; the consumer sets up the encrypted sink")
        password_file = members / "publisher" / "db-password.txt"
        password_file.write_text(database.password)
        password_file.chmod(0o600)
        ccr("keys", "import-secret", "--endpoints", endpoints_file, "--name", "db-password",
            "--value-file", str(password_file), "--host-data", host_data)
        config_file = members / "publisher" / "db-config.json"
        config_file.write_text(json.dumps(database.config(endpoints["keyvault_url"], endpoints["maa_endpoint"])))
        ccr("governance", "secret", "set", contract_id(spec), "db-config", "--value-file", str(config_file),
            "--endpoints", endpoints_file, "--identity", str(members / "publisher"))
        (run / "data" / "consumer").mkdir(parents=True, exist_ok=True)
        ccr("keys", "create-kek", "--endpoints", endpoints_file, "--name", "db-consumer-kek", "--host-data", host_data)
        ccr("data", "publish", str(run / "data" / "consumer"), "--spec", str(spec), "--volume", "consumer-output",
            "--endpoints", endpoints_file, *spec_vars, "--dek-file", str(members / "consumer-dek.json"))

        step(7, "run the room until the job exits")
        where.up(spec, endpoints_file, spec_vars, wait=True)

        step(8, "stop the room; the consumer downloads and decrypts the result")
        where.down()
        ca = contract_ca(spec, endpoints_file, members / "consumer", members / "contract-ca.pem")
        ccr("data", "download", "-o", str(run / "result"), "--spec", str(spec), "--volume", "consumer-output",
            "--endpoints", endpoints_file, *spec_vars, "--dek-file", str(members / "consumer-dek.json"),
            "--contract-ca", str(ca))
        result = json.loads((run / "result" / "result.json").read_text())
        say(f"   result:   {json.dumps(result, sort_keys=True)}")
        say(f"   expected: {json.dumps(expected, sort_keys=True)}")
        if result != expected:
            say("demo: the result differs from the expected answer")
            return 1
        say("   the room's answer is the expected one")

        step(9, "the audit trail in CGS (hash chain verified)")
        ccr("governance", "events", "list", contract_id(spec), "--endpoints", endpoints_file, "--identity",
            str(members / "consumer"))
        say(f"\nDemo done. Everything is in {run}")
        return 0
    finally:
        leave_nothing_behind(run, where)
        if database is not None:
            database.stop()


if __name__ == "__main__":
    sys.exit(main())
