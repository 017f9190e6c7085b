"""Shared by the benches: the latency model, a simulator to run against, specs, floors.

Not a test: the benches print figures and ratios and never assert on time.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# The realistic latency model (seconds per async job, as the cloud runs it).
DEPLOY, START, STOP, DESTROY, OTHER = 20.0, 10.0, 5.0, 5.0, 1.0
RTT_S = 0.030  # per API round trip
RATE_LIMIT = 25.0  # requests per second per account (CloudStack's api.throttling default)


def latency_model(scale: float) -> dict[str, float]:
    return {
        "default": OTHER * scale,
        "deployVirtualMachine": DEPLOY * scale,
        "startVirtualMachine": START * scale,
        "stopVirtualMachine": STOP * scale,
        "destroyVirtualMachine": DESTROY * scale,
    }


def describe_model(scale: float) -> str:
    m = latency_model(scale)
    note = "" if scale == 1 else f"  [--scale {scale}: every job latency multiplied by {scale}]"
    return (
        f"latency model: deploy {m['deployVirtualMachine']:g} s, start {m['startVirtualMachine']:g}"
        f" s, stop {m['stopVirtualMachine']:g} s, destroy {m['destroyVirtualMachine']:g} s, other "
        f"async jobs {m['default']:g} s; {RTT_S * 1000:.0f} ms per API round trip; rate limit "
        f"{RATE_LIMIT:g} req/s{note}"
    )


def floor_up(n: int, c: int, strategy: str, scale: float) -> float:
    """The cloud's own critical path for `up` of n VMs, at most c deploys in flight.

    The etcd VMs join a host anti-affinity group, whose creation job (1 s) must finish
    before they are deployed. Then:
    allocate: deploy(startvm=false) in ceil(n/c) waves (etcd and control in the first),
    each VM started right after its own deploy: affinity + waves * deploy + start.
    reboot: affinity + waves * deploy(start) + stop + start.
    Not counted (the tool's overhead): the lock, API round trips, rendering, tags, rules
    (they run beside the deploys).
    """
    waves = math.ceil(n / c)
    if strategy == "allocate":
        return (OTHER + waves * DEPLOY + START) * scale
    return (OTHER + waves * DEPLOY + STOP + START) * scale


# Rules that allow the control group's own kind of traffic from cluster groups (6443,
# 10250, 8472 from control and workers): the longest per-group chain `down` must revoke.
LONGEST_RULE_CHAIN = 6


def floor_down(n: int, c: int, scale: float) -> float:
    """The cloud's own critical path for `down`: the longer of
    - destroy(expunge) in ceil(n/c) waves; the anti-affinity group's deletion follows the
      wave its members (the etcd VMs) are in, the first: after it with one wave, beside
      the second with more;
    - the group-to-group rules of the busiest group, revoked one after another (CloudStack
      runs one group's rule jobs in turn, and refuses to delete a group a rule allows).
    Not counted: the rate limit (a client's requests past it wait), the lock, the reads.
    """
    vms = max(math.ceil(n / c) * DESTROY, DESTROY + OTHER)
    rules = LONGEST_RULE_CHAIN * OTHER
    return max(vms, rules) * scale


def floor_down_rate_limited(n: int, c: int, scale: float, rate: float = RATE_LIMIT) -> float:
    """floor_down, with the cloud's rate limit too: at most `rate` destroys sent in any
    second (and nothing else sent at all), each as soon as a slot and the limit allow."""
    sent: list[float] = []
    for k in range(n):
        t = sent[-1] if sent else 0.0
        if k >= c:  # a slot frees when the k-c-th destroy (in send order) finishes
            t = max(t, sent[k - c] + DESTROY * scale)
        if k >= rate:
            t = max(t, sent[k - int(rate)] + 1.0)
        sent.append(t)
    # The affinity group goes after its members (the first three), beside the rest.
    vms = max(sent[-1] + DESTROY * scale, sent[min(2, n - 1)] + (DESTROY + OTHER) * scale)
    return max(vms, LONGEST_RULE_CHAIN * OTHER * scale)


@dataclass
class Cloud:
    """A simulator in a subprocess (`stackfleet simulator serve`), so the CLI under test and
    the cloud do not share a GIL and the timings are the client's own."""

    variables: dict[str, str]  # what the CLI reads to reach it: endpoint and credentials
    log: Path
    proc: subprocess.Popen[str]
    home: Path

    def env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.pop("CLOUDSTACK_REGION", None)
        env.update(self.variables, STACKFLEET_HOME=str(self.home))
        return env

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_cloud(scale: float, vm_limit: int = 80, rate_limit: float | None = RATE_LIMIT) -> Cloud:
    """Start the embedded simulator in-process in a helper Python, print its endpoint."""
    work = Path(tempfile.mkdtemp(prefix="stackfleet-bench-"))
    log = work / "requests.jsonl"
    cfg = {
        "latency": latency_model(scale),
        "rtt": RTT_S,
        "rate_limit": rate_limit,
        "vm_limit": vm_limit,
        "request_log": str(log),
        "state_path": str(work / "state.sqlite"),
    }
    code = (
        "import json,sys,time\n"
        "from pathlib import Path\n"
        "from stackfleet.simulator import Simulator, SimulatorConfig\n"
        "c=json.loads(sys.argv[1])\n"
        "c['request_log']=Path(c['request_log']); c['state_path']=Path(c['state_path'])\n"
        "s=Simulator.start(SimulatorConfig(**c))\n"
        "print(json.dumps([s.endpoint,s.api_key,s.secret]),flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    endpoint, key, secret = json.loads(proc.stdout.readline())
    home = work / "home"
    home.mkdir()
    variables = {
        "CLOUDSTACK_ENDPOINT": endpoint,
        "CLOUDSTACK_KEY": key,
        "CLOUDSTACK_SECRET": secret,
    }
    return Cloud(variables, log, proc, home)


def write_spec(
    directory: Path, name: str, workers: int, concurrency: int, zone: str = "sim-zrh-1"
) -> Path:
    data = {
        "name": name,
        "cloud": {"zone": zone, "concurrency": concurrency},
        "os": "flatcar",
        "roles": {"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": workers}},
        "access": {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["203.0.113.0/24"]},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(cloud: Cloud, *args: str) -> tuple[float, int]:
    """Wall time of one `stackfleet` subprocess (start-up included, as a CI job sees it)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stackfleet", *args],
        env=cloud.env(),
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"stackfleet {' '.join(args)} failed ({proc.returncode})")
    return wall, proc.returncode


def up_then_down(
    cloud: Cloud, spec: Path
) -> tuple[float, list[dict[str, Any]], float, list[dict[str, Any]]]:
    """`up --no-wait`, then `down --yes`: each one's wall time and the requests it made (up's,
    down's); the cloud is stopped afterwards."""
    try:
        up_s, _ = run_cli(cloud, "up", "-f", str(spec), "--no-wait", "-o", "json")
        up_reqs = cloud.requests()
        # A fresh rate-limit window for `down`, as after any pause (a CI job runs its tests
        # in between): the last second of `up`'s requests is not `down`'s cost.
        time.sleep(1.1)
        down_s, _ = run_cli(cloud, "down", "-f", str(spec), "--yes", "-o", "json")
        down_reqs = cloud.requests()[len(up_reqs) :]
    finally:
        cloud.stop()
    return up_s, up_reqs, down_s, down_reqs


def call_counts(requests: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r.get("command")) for r in requests)


def top(counts: Counter[str], n: int = 8) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.most_common(n))
