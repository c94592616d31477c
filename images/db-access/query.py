"""db-access: revenue per region from the publisher's PostgreSQL database, only for regions with enough orders.

Usage: query.py OUTPUT_DIR

Nothing about the database is in the image or the spec except the name of a CGS secret
(`DB_CONFIG_SECRET`). Inside the room the app:
 1. reads the database configuration from that secret through the governance sidecar (the room tells the
    app where it is in CCR_GOVERNANCE_URL), which CGS hands out only to this attested room;
 2. gets the database password through the skr sidecar (CCR_SKR_URL): Key Vault releases it only to a
    room whose attestation shows the contract's policy;
 3. queries over TLS (the server's CA comes with the configuration); the firewall lets it reach that one
    address and port and nothing else;
 4. writes the aggregate to OUTPUT_DIR/result.json (a datasink: encrypted on its way out).
"""

import base64
import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path

import pg8000.native

GOVERNANCE = os.environ["CCR_GOVERNANCE_URL"]
SKR = os.environ["CCR_SKR_URL"]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def database_config() -> dict:
    secret_id = os.environ["DB_CONFIG_SECRET"]
    return json.loads(post(f"{GOVERNANCE}/secrets/{secret_id}", {})["value"])


def database_password(key: dict) -> str:
    released = post(f"{SKR}/key/release", {"maa_endpoint": key["maa_endpoint"], "akv_endpoint": key["vault_url"],
                                           "kid": key["kid"]})
    k = json.loads(released["key"])["k"]
    return base64.urlsafe_b64decode(k + "=" * (-len(k) % 4)).decode()


def main(output_dir: str) -> int:
    config = database_config()
    print(f"database {config['database']} at {config['host']}:{config['port']} (config from CGS)", flush=True)
    tls = ssl.create_default_context(cadata=config["ca_certificate"])
    connection = pg8000.native.Connection(config["user"], host=config["host"], port=int(config["port"]),
                                          database=config["database"], password=database_password(config["password"]),
                                          ssl_context=tls, timeout=30)
    try:
        minimum = int(os.environ.get("MIN_ORDERS", "10"))
        rows = connection.run("SELECT region, count(*), sum(quantity * unit_price_cents) FROM orders "
                              "GROUP BY region HAVING count(*) >= :minimum ORDER BY region", minimum=minimum)
        total = connection.run("SELECT count(*) FROM orders")[0][0]
    finally:
        connection.close()
    result = {"min_orders": minimum, "orders": total,
              "regions": {region: {"orders": count, "revenue_cents": int(revenue)} for region, count, revenue in rows}}
    with open(Path(output_dir) / "result.json", "w") as out:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
    print(f"wrote revenue for {len(rows)} regions from {total} orders", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
