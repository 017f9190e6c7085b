"""Requests per second the simulator sustains, for a list and for a deploy (run by hand).

    python bench/bench_simulator.py [--seconds 3] [--threads 8] [--state /tmp/bench.db]

Real HTTP over loopback with signed requests, as a client would send them.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from stackfleet.simulator import Simulator, SimulatorConfig, signing


def _worker(sim: Simulator, make: object, until: float, counts: list[int], i: int) -> None:
    host, port = urllib.parse.urlsplit(sim.endpoint).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    n = 0
    while time.monotonic() < until:
        params = make(n, i)  # type: ignore[operator]
        params.update(apiKey=sim.api_key, response="json")
        params["signature"] = signing.sign(params, sim.secret)
        conn.request("GET", "/client/api?" + urllib.parse.urlencode(params))
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        n += 1
    counts[i] = n
    conn.close()


def measure(sim: Simulator, label: str, make: object, seconds: float, threads: int) -> None:
    counts = [0] * threads
    until = time.monotonic() + seconds
    workers = [
        threading.Thread(target=_worker, args=(sim, make, until, counts, i)) for i in range(threads)
    ]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    print(
        f"{label:<28} {sum(counts) / elapsed:8.0f} requests/s  ({sum(counts)} in {elapsed:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--state", type=Path, default=None, help="SQLite file (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = args.state or Path(tmp) / "bench.db"
        cfg = SimulatorConfig(state_path=state, vm_limit=10**9, hosts=1000)
        with Simulator.start(cfg) as sim:
            zone = sim_zone_ids(sim)
            measure(
                sim, "listZones", lambda n, i: {"command": "listZones"}, args.seconds, args.threads
            )
            measure(
                sim,
                "deployVirtualMachine",
                lambda n, i: {
                    "command": "deployVirtualMachine",
                    "name": f"bench-{i}-{n}",
                    **zone,
                    "startvm": "false",
                },
                args.seconds,
                args.threads,
            )
            measure(
                sim,
                "listVirtualMachines (pagesize 20)",
                lambda n, i: {"command": "listVirtualMachines", "page": "1", "pagesize": "20"},
                args.seconds,
                args.threads,
            )


def sim_zone_ids(sim: Simulator) -> dict[str, str]:
    from stackfleet.simulator import catalog

    zone = catalog.ZONES[1]
    return {
        "zoneid": zone.id,
        "templateid": catalog.TEMPLATES[0].id,
        "serviceofferingid": catalog.OFFERINGS[0].id,
    }


if __name__ == "__main__":
    main()
