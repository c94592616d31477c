"""cleanroomhello-job: the overlap of two parties' customer lists, and the publisher's total spend on it.

Usage: job.py PUBLISHER_DIR PARTNER_DIR OUTPUT_DIR

The publisher's CSV files have `email,amount`; the partner's have `email`. Neither party sees the other's
list: only the aggregate leaves the room, in OUTPUT_DIR/result.json (a datasink: encrypted on its way out).
"""

import csv
import json
import sys
from pathlib import Path


def rows(folder: Path):
    for path in sorted(folder.rglob("*.csv")):
        with open(path, newline="") as handle:
            yield from csv.DictReader(handle)


def main(publisher_dir: str, partner_dir: str, output_dir: str) -> int:
    spend = {}
    for row in rows(Path(publisher_dir)):
        spend[row["email"].strip().lower()] = spend.get(row["email"].strip().lower(), 0) + int(row["amount"])
    partner = {row["email"].strip().lower() for row in rows(Path(partner_dir))}
    overlap = sorted(set(spend) & partner)
    result = {"publisher_customers": len(spend), "partner_customers": len(partner),
              "overlap": len(overlap), "overlap_spend": sum(spend[e] for e in overlap)}
    with open(Path(output_dir) / "result.json", "w") as out:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
    print(f"wrote result for {len(overlap)} overlapping customers", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
