"""Start-up time: `stackfleet --help` and `stackfleet status` against `python -c pass`.

    python bench/bench_startup.py [--runs 10]

`status` runs against a simulator in another process (no latency) on a cluster that
does not exist: what is measured is imports, spec-less flag parsing, one live-state read.
Also lists which heavy modules `--help` imports (it should import none of them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import start_cloud

HEAVY = ("libcloud", "cryptography", "paramiko", "jinja2", "rich", "yaml")


def timed(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    py = sys.executable
    base = timed([py, "-c", "pass"], args.runs)
    helps = timed([py, "-m", "stackfleet", "--help"], args.runs)
    cloud = start_cloud(0.0, rate_limit=None)
    try:
        status = timed(
            [py, "-m", "stackfleet", "status", "--cluster", "none", "-o", "json"],
            args.runs,
            cloud.env(),
        )
    finally:
        cloud.stop()
    probe = (
        "import sys, runpy; sys.argv=['stackfleet','--help']\n"
        "try:\n    runpy.run_module('stackfleet', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    loaded = subprocess.run([py, "-c", probe], capture_output=True, text=True).stderr.strip()
    print(f"median of {args.runs} runs, wall time of a fresh process")
    print(f"  python -c pass          {base * 1000:7.1f} ms")
    print(f"  stackfleet --help       {helps * 1000:7.1f} ms   ({helps / base:.1f}x python)")
    print(f"  stackfleet status       {status * 1000:7.1f} ms   ({status / base:.1f}x python)")
    print(f"  heavy modules --help imports: {loaded.splitlines()[-1] if loaded else 'none'}")


if __name__ == "__main__":
    main()
