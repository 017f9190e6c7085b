"""The etcd membership planner: steps one member at a time, and the one-line refusals.

Real: stackfleet's planner (pure code) and plan.diff with a parsed spec. Simulated: the
cloud's machines and what etcd says about its members (EtcdView), as data; the same
planner runs against a real etcd in test_membership_real.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from stackfleet.errors import BadInput
from stackfleet.provisioners.base import (
    BOOTSTRAP_TAG,
    Image,
    LiveState,
    Machine,
    MachineState,
    Size,
    Zone,
)
from stackfleet.provisioners.etcd_membership import (
    JOIN_TAG,
    EtcdView,
    Member,
    needs_etcd,
    plan_membership,
)
from stackfleet.provisioners.plan import Resolved, diff
from stackfleet.spec import parse_spec

DONE = {BOOTSTRAP_TAG: "done"}


def vm(n: int, state: str = "Running", tags: dict[str, str] | None = None) -> Machine:
    machine_state = MachineState(state)
    return Machine(f"m{n}", f"c-etcd-{n}", "etcd", machine_state, f"10.0.0.{n}", tags=tags or DONE)


def member(n: int, healthy: bool = True) -> Member:
    return Member(n, f"c-etcd-{n}", (f"https://10.0.0.{n}:2380",), (), healthy)


def names(n: int) -> list[str]:
    return [f"c-etcd-{i}" for i in range(1, n + 1)]


def steps(n_vms: int, target: int, unhealthy: tuple[int, ...] = ()) -> list[tuple[str, str]]:
    view = EtcdView(tuple(member(i, i not in unhealthy) for i in range(1, n_vms + 1)))
    plan = plan_membership(names(target), [vm(i) for i in range(1, n_vms + 1)], view)
    assert plan.refused == []
    return [(s.verb, s.name) for s in plan.steps]


def test_grow_and_shrink_one_member_at_a_time_highest_numbers_leave_first() -> None:
    assert steps(3, 5) == [("member-add", "c-etcd-4"), ("member-add", "c-etcd-5")]
    assert steps(5, 3) == [("member-remove", "c-etcd-5"), ("member-remove", "c-etcd-4")]
    assert steps(3, 1) == [("member-remove", "c-etcd-3"), ("member-remove", "c-etcd-2")]
    assert steps(3, 3) == []


def test_a_member_whose_vm_broke_or_vanished_is_removed_then_added() -> None:
    view = EtcdView(tuple(member(i, i != 2) for i in (1, 2, 3)))
    for machines in ([vm(1), vm(2, "Error"), vm(3)], [vm(1), vm(3)]):
        plan = plan_membership(names(3), machines, view)
        assert [(s.verb, s.name) for s in plan.steps] == [
            ("member-remove", "c-etcd-2"),
            ("member-add", "c-etcd-2"),
        ]


def test_refusals_are_one_line_each_and_come_with_no_steps() -> None:
    three = [vm(i) for i in (1, 2, 3)]
    view = EtcdView(tuple(member(i) for i in (1, 2, 3)))
    even = plan_membership(names(4), three, view)
    assert even.steps == [] and even.refused == [
        "roles.etcd.count: 4 is even: an even member count tolerates no more failures than "
        "one fewer; use 3 or 5"
    ]
    last = plan_membership([], [vm(1)], EtcdView((member(1),)))
    assert last.steps == [] and "to delete the cluster use `stackfleet down`" in last.refused[0]
    sim = plan_membership(names(5), three, EtcdView(unreachable="the simulator's VMs run nothing"))
    assert sim.refused == [
        "roles.etcd.count: changing etcd's members (3 -> 5) needs etcd's member API, and etcd "
        "cannot be reached: the simulator's VMs run nothing; nothing was changed"
    ]
    # One member down: removing a healthy one leaves 1 of 2, adding leaves 2 of 4.
    down = EtcdView(tuple(member(i, i != 2) for i in (1, 2, 3)))
    for target in (1, 5):
        refused = plan_membership(names(target), three, down)
        assert refused.steps == [] and "would lose quorum" in refused.refused[0]


def test_a_cluster_still_forming_is_left_to_the_first_bootstrap() -> None:
    forming = [vm(1), vm(2, tags={}), vm(3, tags={})]
    assert not needs_etcd(names(3), forming)
    assert plan_membership(names(3), forming, None).steps == []
    # A joiner whose run was killed before it booted is resumed, not rendered `new`.
    joining = [vm(1), vm(2), vm(3), vm(4, tags={JOIN_TAG: "existing"})]
    added = Member(9, "", ("https://10.0.0.4:2380",))
    view = EtcdView((*(member(i) for i in (1, 2, 3)), added))
    plan = plan_membership(names(5), joining, view)
    assert next((s.verb, s.name, s.why) for s in plan.steps) == (
        "member-add",
        "c-etcd-4",
        "resume: already added",
    )
    assert [(s.verb, s.name) for s in plan.steps][1:] == [("member-add", "c-etcd-5")]


def test_diff_refuses_one_to_zero_and_shows_member_steps_as_actions() -> None:
    spec = parse_spec(
        {
            "name": "cc",
            "cloud": {"profile": "simulator", "zone": "z"},
            "roles": {"etcd": {"count": 1}},
        }
    )
    resolved = Resolved(
        Zone("z", "z", True, 32768), {"etcd": Image("i", "i")}, {"etcd": Size("s", "s", 1, 1)},
        "allocate",
    )  # fmt: skip
    first = replace(vm(1), name="cc-etcd-1", offering_id="s", template_id="i")
    live = LiveState("cc", machines=[first])
    zero = replace(spec, roles=(replace(spec.roles[0], count=0),))  # the spec parser says "even"
    with pytest.raises(BadInput, match=r"1 -> 0 would delete the last etcd member"):
        diff(zero, resolved, live).check()
    three = replace(spec, roles=(replace(spec.roles[0], count=3),))
    plan = diff(three, resolved, live, etcd_view=EtcdView((replace(member(1), name="cc-etcd-1"),)))
    acts = [(a.verb, a.kind, a.name) for a in plan.actions() if a.kind != "cluster"]
    assert ("member-add", "etcd-member", "cc-etcd-2") in acts
    assert ("create", "machine", "cc-etcd-3") in acts
    assert plan.etcd.handled == {"cc-etcd-2", "cc-etcd-3"}
