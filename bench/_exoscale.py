"""The `up`/`down` bench against the exoscale API v2 simulator (`bench_up_down.py --api
exoscale`): same clusters, same subprocess CLI, the exoscale provider and its simulator.

The exoscale simulator has one latency for every operation, and runs one resource's operations
one after another. Groups, rules, keys and labels change at once (their operation stays
pending, but the change shows in the next listing); an instance changes state when its
operation ends. The model: every operation takes OPERATION x scale seconds.

The floor of `up` (allocate: the public IPv4 is known at create): ceil(n/c) waves of create
(stopped), one update-instance (the final user-data), the start: (waves + 2) operations.
The floor of `down`: ceil(n/c) waves of delete (the groups then go at once): waves operations.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from _common import Cloud, top, up_then_down

# Seconds per operation at --scale 1: an instance operation (create, start) as the
# CloudStack model's start (10 s); the simulator has one latency for all.
OPERATION = 10.0


def describe(scale: float) -> str:
    return (
        f"exoscale simulator: every operation {OPERATION * scale:g} s "
        f"(--scale {scale}); no round-trip delay, no rate limit"
    )


def floor_up(n: int, c: int, scale: float) -> float:
    return (math.ceil(n / c) + 2) * OPERATION * scale


def floor_down(n: int, c: int, scale: float) -> float:
    return math.ceil(n / c) * OPERATION * scale


def start_exoscale(scale: float) -> Cloud:
    """`stackfleet simulator serve --api exoscale` in its own process."""
    work = Path(tempfile.mkdtemp(prefix="stackfleet-bench-exo-"))
    log = work / "requests.jsonl"
    home = work / "home"
    home.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackfleet",
            "simulator",
            "serve",
            "--api",
            "exoscale",
            "--port",
            "0",
            "--state",
            str(work / "exoscale.sqlite"),
            "--request-log",
            str(log),
            "--latency",
            str(OPERATION * scale),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    variables: dict[str, str] = {}
    while len(variables) < 3:  # its first lines: endpoint, key and secret, NAME=value
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the exoscale simulator did not start")
        name, _, value = line.strip().partition("=")
        variables[name] = value
    return Cloud(variables, log, proc, home)


def write_spec(directory: Path, name: str, workers: int, concurrency: int) -> Path:
    data = {
        "name": name,
        "cloud": {"provider": "exoscale", "zone": "ch-gva-2", "concurrency": concurrency},
        "os": "flatcar",
        "roles": {
            "etcd": {"count": 3, "offering": "standard.medium"},
            "control": {"count": 1, "offering": "standard.medium"},
            "workers": {"count": workers, "offering": "standard.large"},
        },
        "access": {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["203.0.113.0/24"]},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one(scale: float, workers: int, concurrency: int) -> dict[str, float]:
    n = 3 + 1 + workers
    spec = write_spec(Path(tempfile.mkdtemp()), f"bench{workers}", workers, concurrency)
    up_s, up_reqs, down_s, down_reqs = up_then_down(start_exoscale(scale), spec)
    invalid = [
        r
        for r in up_reqs + down_reqs
        if r["status"] == 200 and "ok" not in (r["request_schema"], r["response_schema"])
    ]
    fu, fd = floor_up(n, concurrency, scale), floor_down(n, concurrency, scale)
    print(f"\n3+1+{workers} = {n} instances, cloud.concurrency {concurrency}, exoscale")
    for what, wall, floor, reqs in (("up", up_s, fu, up_reqs), ("down", down_s, fd, down_reqs)):
        common = top(Counter(str(r.get("operation")) for r in reqs), 6)
        print(
            f"  {what:5} {wall:7.2f} s   floor {floor:6.2f} s   ratio {wall / floor:4.2f}x   "
            f"API calls {len(reqs)}"
        )
        print(f"        {common}")
    if invalid:
        print(f"  {len(invalid)} request(s) or answer(s) broke the OpenAPI schemas")
    return {"up": up_s, "down": down_s, "floor_up": fu, "floor_down": fd}
