"""Seeded faults, the request log, and two processes sharing one SQLite state file.

Real: HTTP over loopback, SQLite files in WAL mode, a second OS process (subprocess).
Simulated: the faults themselves (drawn from a seeded RNG, as configured).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from sim_apiclient import Api

from stackfleet.simulator import Simulator, SimulatorConfig, parse_faults


def _outcomes(seed: int) -> list[object]:
    cfg = SimulatorConfig(faults=parse_faults(f"http5xx=0.3,drop=0.2,seed={seed}"))
    with Simulator.start(cfg) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        seen: list[object] = []
        for _ in range(20):
            try:
                seen.append(api.raw("listZones")[0])
            except Exception as exc:  # json error on the 503 page, or a reset connection
                seen.append(type(exc).__name__)
        return seen


def test_seeded_faults_are_reproducible() -> None:
    first, second = _outcomes(42), _outcomes(42)
    assert first == second
    assert 200 in first and any(o != 200 for o in first)
    assert _outcomes(7) != first


def test_jobfail_fails_jobs_with_530() -> None:
    cfg = SimulatorConfig(faults=parse_faults("jobfail=1,seed=1", "createTags"))
    with Simulator.start(cfg) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        vm = api.deploy("sim-gva-1", name="f1")  # deploy is not in the fault list
        job = api.wait(
            api(
                "createTags",
                resourcetype="UserVm",
                resourceids=vm["id"],
                **{"tags[0].key": "k", "tags[0].value": "v"},
            )["jobid"]
        )
        assert job["jobstatus"] == 2 and job["jobresult"]["errorcode"] == 530


def test_request_log_has_no_secrets(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with Simulator.start(SimulatorConfig(request_log=log)) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        api.deploy("sim-gva-1", name="l1", userdata="I2Nsb3VkLWNvbmZpZwo=")
        text = log.read_text()
        assert sim.api_key not in text and sim.secret not in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    entries = [json.loads(line) for line in text.splitlines()]
    deploy = next(e for e in entries if e["command"] == "deployVirtualMachine")
    assert deploy["params"]["userdata"] == "<20 chars>"
    assert "signature" not in deploy["params"] and deploy["status"] == 200


def test_two_processes_share_one_state_file(tmp_path: Path) -> None:
    state = tmp_path / "cloud.db"
    cfg = SimulatorConfig(state_path=state, latency={"default": 0.0})
    with Simulator.start(cfg) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        api.deploy("sim-zrh-1", name="shared-1")
        key, secret = sim.api_key, sim.secret
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    tests_dir = str(Path(__file__).parent)
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {tests_dir!r})
        from pathlib import Path
        from stackfleet.simulator import Simulator, SimulatorConfig
        from sim_apiclient import Api
        with Simulator.start(SimulatorConfig(state_path=Path({str(state)!r}))) as sim:
            assert (sim.api_key, sim.secret) == ({key!r}, {secret!r})
            api = Api(sim.endpoint, sim.api_key, sim.secret)
            names = [v["name"] for v in api("listVirtualMachines")["virtualmachine"]]
            api.deploy("sim-zrh-1", name="shared-2")
            print(",".join(names))
    """)
    with Simulator.start(cfg) as sim:  # this process keeps its own simulator open meanwhile
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "shared-1"
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        vms = api("listVirtualMachines")["virtualmachine"]
        assert sorted(v["name"] for v in vms) == ["shared-1", "shared-2"]
        assert len({v["nic"][0]["ipaddress"] for v in vms}) == 2
