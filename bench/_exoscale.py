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

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

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


class ExoCloud:
    """`stackfleet simulator serve --api exoscale` in its own process."""

    def __init__(self, scale: float) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="stackfleet-bench-exo-"))
        self.log = self.work / "requests.jsonl"
        self.home = self.work / "home"
        self.home.mkdir()
        self.proc = subprocess.Popen(
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
                str(self.work / "exoscale.sqlite"),
                "--request-log",
                str(self.log),
                "--latency",
                str(OPERATION * scale),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.vars: dict[str, str] = {}
        while len(self.vars) < 3:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("the exoscale simulator did not start")
            name, _, value = line.strip().partition("=")
            self.vars[name] = value

    def env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(self.vars, STACKFLEET_HOME=str(self.home))
        return env

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


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


def run_cli(cloud: ExoCloud, *args: str) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stackfleet", *args], env=cloud.env(), capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"stackfleet {' '.join(args)} failed ({proc.returncode})")
    return wall


def one(scale: float, workers: int, concurrency: int) -> dict[str, float]:
    n = 3 + 1 + workers
    cloud = ExoCloud(scale)
    try:
        spec = write_spec(Path(tempfile.mkdtemp()), f"bench{workers}", workers, concurrency)
        up_s = run_cli(cloud, "up", "-f", str(spec), "--no-wait", "-o", "json")
        up_reqs = cloud.requests()
        down_s = run_cli(cloud, "down", "-f", str(spec), "--yes", "-o", "json")
        down_reqs = cloud.requests()[len(up_reqs) :]
    finally:
        cloud.stop()
    invalid = [
        r
        for r in up_reqs + down_reqs
        if r["status"] == 200 and "ok" not in (r["request_schema"], r["response_schema"])
    ]
    fu, fd = floor_up(n, concurrency, scale), floor_down(n, concurrency, scale)
    print(f"\n3+1+{workers} = {n} instances, cloud.concurrency {concurrency}, exoscale")
    for what, wall, floor, reqs in (("up", up_s, fu, up_reqs), ("down", down_s, fd, down_reqs)):
        counts = Counter(str(r.get("operation")) for r in reqs)
        common = ", ".join(f"{k} {v}" for k, v in counts.most_common(6))
        print(
            f"  {what:5} {wall:7.2f} s   floor {floor:6.2f} s   ratio {wall / floor:4.2f}x   "
            f"API calls {len(reqs)}"
        )
        print(f"        {common}")
    if invalid:
        print(f"  {len(invalid)} request(s) or answer(s) broke the OpenAPI schemas")
    return {"up": up_s, "down": down_s, "floor_up": fu, "floor_down": fd}
