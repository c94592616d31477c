"""Verifying and rendering the audit chain for `ccr governance events list`.

Besides the chain itself, the member remembers the longest head it has seen for each contract (in its
identity directory): a later listing that ends earlier means events were cut from the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ..common.auditchain import verify_chain


def _seen_heads_file(identity_dir: Path) -> Path:
    return identity_dir / "seen-heads.json"


def check_and_render(events: list[dict[str, Any]], head: dict[str, Any], client, args: argparse.Namespace) -> int:
    problems = verify_chain(events, head)
    seen_path = _seen_heads_file(Path(args.identity or "."))
    key = f"{client.endpoint} {args.contract}"
    try:
        seen = json.loads(seen_path.read_text()) if seen_path.exists() else {}
    except ValueError:
        seen = {}
    previous = seen.get(key)
    if previous and previous["seqno"] > len(events):
        problems.append(f"events end at seqno {len(events)} but this member saw seqno {previous['seqno']} "
                        "before (events removed from the end)")
    elif previous and previous["seqno"] <= len(events) and events[previous["seqno"] - 1]["hash"] != previous["hash"]:
        problems.append(f"seqno {previous['seqno']} differs from what this member saw before (history rewritten)")
    if not problems and events and seen_path.parent.is_dir():
        seen[key] = {"seqno": events[-1]["seqno"], "hash": events[-1]["hash"]}
        seen_path.write_text(json.dumps(seen, indent=1))

    shown = [e for e in events if args.scope is None or e.get("scope") == args.scope]
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(f"{'SEQNO':>5}  {'TIME (UTC)':<23}  {'SCOPE':<10}  {'ID':<18}  DATA")
        for event in shown:
            when = dt.datetime.fromtimestamp(int(event["timestamp"]) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            data = json.dumps(event.get("data"), separators=(",", ":"))
            print(f"{event['seqno']:>5}  {when[:23]:<23}  {event.get('scope', ''):<10.10}  "
                  f"{event.get('id', ''):<18.18}  {data[:100]}")
    if problems:
        for problem in problems:
            print(f"TAMPERED: {problem}")
        print(f"audit chain of {args.contract}: BROKEN ({len(problems)} problem(s))")
        return 1
    print(f"audit chain of {args.contract}: intact, {len(events)} event(s), head {head.get('hash', '')[:16]}…")
    return 0
