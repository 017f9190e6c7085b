"""`stackfleet up` and `down` wall time and API calls against the simulator, next to the floor.

    python bench/bench_up_down.py                 # full latency model (a few minutes)
    python bench/bench_up_down.py --scale 0.25    # every job latency x 0.25
    python bench/bench_up_down.py --api exoscale  # the exoscale provider and simulator
    python bench/bench_up_down.py --scale 0.5 --repeat 5   # medians over five runs each

Each command runs as a subprocess (start-up included, as a CI job sees it) against the
simulator in another process: realistic job latencies, 30 ms per round trip, a rate limit.
The floor (see _common.floor_up/floor_down) is the critical path the cloud itself imposes.
Prints figures and ratios; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    call_counts,
    describe_model,
    floor_down,
    floor_down_rate_limited,
    floor_up,
    start_cloud,
    top,
    up_then_down,
    write_spec,
)


def one(scale: float, workers: int, concurrency: int) -> dict[str, float]:
    n = 3 + 1 + workers
    spec = write_spec(Path(tempfile.mkdtemp()), f"bench{workers}", workers, concurrency)
    up_s, up_reqs, down_s, down_reqs = up_then_down(
        start_cloud(scale, vm_limit=max(80, n + 10)), spec
    )
    fu, fd = floor_up(n, concurrency, "allocate", scale), floor_down(n, concurrency, scale)
    fd_rate = floor_down_rate_limited(n, concurrency, scale)
    up_counts, down_counts = call_counts(up_reqs), call_counts(down_reqs)
    throttled = sum(1 for r in up_reqs + down_reqs if r.get("status") == 429)
    print(f"\n3+1+{workers} = {n} VMs, cloud.concurrency {concurrency}, strategy allocate")
    print(
        f"  up    {up_s:7.2f} s   floor {fu:6.2f} s   ratio {up_s / fu:4.2f}x   "
        f"API calls {len(up_reqs)} ({len(up_reqs) / n:.1f}/node)"
    )
    print(f"        {top(up_counts)}")
    print(
        f"  down  {down_s:7.2f} s   floor {fd:6.2f} s   ratio {down_s / fd:4.2f}x   "
        f"API calls {len(down_reqs)}   (with the rate limit: floor {fd_rate:.2f} s, "
        f"ratio {down_s / fd_rate:4.2f}x)"
    )
    print(f"        {top(down_counts)}")
    if throttled:
        print(f"  (the rate limit refused {throttled} request(s); they were retried)")
    return {"up": up_s, "down": down_s, "floor_up": fu, "floor_down": fd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job latency")
    parser.add_argument(
        "--small-concurrency", type=int, default=9, help="for 3+1+5 (default 9: all at once)"
    )
    parser.add_argument("--large-concurrency", type=int, default=27, help="for 3+1+50")
    parser.add_argument("--only", choices=["small", "large"], help="run one cluster size")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each size N times and print the median and range of the ratios "
        "(a shared machine is noisy: quote medians)",
    )
    parser.add_argument(
        "--api",
        choices=["cloudstack", "exoscale"],
        default="cloudstack",
        help="which provider and simulator (exoscale: see bench/_exoscale.py)",
    )
    args = parser.parse_args()
    run = one
    if args.api == "exoscale":
        import _exoscale

        print(_exoscale.describe(args.scale))
        run = _exoscale.one
    else:
        print(describe_model(args.scale))
        print(
            "floor = the cloud's critical path. up (allocate): affinity group job, ceil(n/c) "
            "waves of deploy(startvm=false), start. down: the longer of ceil(n/c) waves of "
            "destroy (the affinity group's deletion, after the first wave, beside the next) "
            "and the busiest group's rule revokes run in turn"
        )
    sizes = [(5, args.small_concurrency), (50, args.large_concurrency)]
    sizes = [(w, c) for w, c in sizes if args.only != ("large" if w == 5 else "small")]
    figures = {w: [run(args.scale, w, c) for _ in range(args.repeat)] for w, c in sizes}
    if args.repeat > 1:
        summarize(figures)


def summarize(figures: dict[int, list[dict[str, float]]]) -> None:
    print("\nratios over the runs: median (min-max)")
    for workers, runs in figures.items():
        parts = []
        for what in ("up", "down"):
            ratios = sorted(r[what] / r[f"floor_{what}"] for r in runs)
            parts.append(
                f"{what} {statistics.median(ratios):4.2f}x ({ratios[0]:4.2f}-{ratios[-1]:4.2f})"
            )
        print(f"  3+1+{workers:<3} {len(runs)} runs   " + "   ".join(parts))


if __name__ == "__main__":
    main()
