"""The 2014 way, kept as the baseline: a plain script over libcloud, one call after another.

The original (kubernetes-exoscale) created its groups, rules and VMs with libcloud's
CloudStack driver, each call waiting for its job before the next. This script does the
same for the cluster stackfleet builds (3 etcd + 1 control + N workers, the same groups
and rules, the anti-affinity group, the key), with the *unmodified* libcloud driver:
ex_create_security_group, ex_authorize_security_group_ingress, ex_create_affinity_group,
import_key_pair_from_string, create_node(ex_start_vm=True) ... one after another, and
destroy_node(ex_expunge=True) one after another to clean up. Written to be fair:
  - nothing waits that libcloud does not wait for (its own polling, once per second);
  - the userdata is stackfleet's stage-1 document for the node (users, keys, host key,
    hostname), sent as libcloud sends it: base64 in a GET. The final TLS documents are
    ~9 KB and do not fit a GET (CloudStack refuses 4096+ base64 characters), and the
    2014 original had no TLS, so the baseline boots once with the small document;
  - group-to-group rules go through the driver's **kwargs (usersecuritygrouplist).

    python bench/baseline_2014.py [--scale 0.25] [--workers 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Cloud,
    call_counts,
    describe_model,
    start_cloud,
    top,
    write_spec,
)


def bring_up(cloud: Cloud, spec_path: Path) -> tuple[float, list[object]]:
    import os

    from libcloud.compute.providers import Provider, get_driver

    from stackfleet import state
    from stackfleet.provisioners import naming
    from stackfleet.provisioners.bootstrap import render_stage1
    from stackfleet.provisioners.plan import wanted_rules
    from stackfleet.spec import load_spec

    os.environ["STACKFLEET_HOME"] = str(cloud.home)
    spec = load_spec(spec_path)
    key = state.operator_ssh_key(spec.name).public_openssh
    names = spec.machine_names()
    userdata = render_stage1(spec, names, key)  # rendered before the clock starts

    started = time.monotonic()
    reach = cloud.variables
    driver = get_driver(Provider.CLOUDSTACK)(
        reach["CLOUDSTACK_KEY"],
        reach["CLOUDSTACK_SECRET"],
        url=reach["CLOUDSTACK_ENDPOINT"],
        secure=False,
    )
    location = next(z for z in driver.list_locations() if z.name == spec.zone)
    images = {i.name: i for i in driver.list_images(location)}
    sizes = {s.name: s for s in driver.list_sizes(location)}
    rules = wanted_rules(spec)
    for group in rules:
        driver.ex_create_security_group(group, description=f"2014 way: {group}")
    account = driver.ex_list_security_groups()[0]["account"]
    for group, wanted in rules.items():
        for rule in sorted(wanted, key=lambda r: r.describe()):
            extra = {}
            if rule.source_group is not None:
                extra = {
                    "usersecuritygrouplist[0].account": account,
                    "usersecuritygrouplist[0].group": rule.source_group,
                }
            driver.ex_authorize_security_group_ingress(
                group, rule.protocol, rule.cidr, rule.start_port, rule.end_port, **extra
            )
    driver.import_key_pair_from_string(naming.key_name(spec.name), key)
    spread = naming.spread_group_name(spec.name)
    affinity = driver.ex_create_affinity_group(spread, driver.ex_list_affinity_group_types()[0])
    nodes = []
    for name, role in names:
        r = spec.role(role)
        assert r is not None
        nodes.append(
            driver.create_node(
                name=name,
                size=sizes[r.offering],
                image=images[r.template],
                location=location,
                ex_keyname=naming.key_name(spec.name),
                ex_userdata=userdata[name],
                ex_security_groups=[naming.group_name(spec.name, role)],
                ex_affinity_groups=[affinity] if role == "etcd" else None,
                ex_start_vm=True,
            )
        )
    return time.monotonic() - started, [driver, nodes]


def tear_down(driver: object, nodes: list[object]) -> float:
    started = time.monotonic()
    for node in nodes:
        driver.destroy_node(node, ex_expunge=True)  # type: ignore[attr-defined]
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job latency")
    parser.add_argument("--workers", type=int, default=5)
    args = parser.parse_args()
    print(describe_model(args.scale))
    cloud = start_cloud(args.scale)
    try:
        spec = write_spec(Path(tempfile.mkdtemp()), "old", args.workers, 1)
        up_s, (driver, nodes) = bring_up(cloud, spec)
        up_reqs = cloud.requests()
        down_s = tear_down(driver, nodes)  # type: ignore[arg-type]
        down_reqs = cloud.requests()[len(up_reqs) :]
    finally:
        cloud.stop()
    n = 4 + args.workers
    print(f"\n2014 baseline, 3+1+{args.workers} = {n} VMs, sequential libcloud")
    print(f"  up    {up_s:7.2f} s   API calls {len(up_reqs)}   {top(call_counts(up_reqs), 6)}")
    print(f"  down  {down_s:7.2f} s   API calls {len(down_reqs)} (destroy_node one by one)")


if __name__ == "__main__":
    main()
