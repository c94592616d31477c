"""Run the benchmarks and write bench/results.json.

    python -m bench            # all of them
    python -m bench skr proxy  # only these modules
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


def modules(selected: list[str]) -> list[str]:
    found = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))
    unknown = [name for name in selected if name not in found]
    if unknown:
        raise SystemExit(f"bench: no benchmark named {', '.join(unknown)}; available: {', '.join(found)}")
    return selected or found


def main(argv: list[str]) -> int:
    results: dict[str, float] = json.loads(RESULTS.read_text()) if argv and RESULTS.exists() else {}
    failed = []
    for name in modules(argv):
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        print(f"== bench {name}", flush=True)
        started = time.monotonic()
        try:
            figures = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        for key, value in figures.items():
            print(f"   {key} = {value:.4g}" if isinstance(value, float) else f"   {key} = {value}")
        results.update(figures)
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
