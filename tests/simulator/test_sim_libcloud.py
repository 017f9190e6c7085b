"""apache-libcloud's CloudStack driver, unmodified, against `stackfleet simulator serve`.

Real: the libcloud 3.x driver (its own signing, GETs and job polling), HTTP over loopback,
the CLI started as a separate OS process, SQLite state in a file. Simulated: the cloud.
Only libcloud's poll interval is shortened (as libcloud's own tests do).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sf_serve import serve

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    with serve(tmp_path / "cloud.db", latency="default=0.05") as env:
        yield env


def test_libcloud_end_to_end(served: dict[str, str]) -> None:
    from libcloud.compute.providers import Provider, get_driver

    driver: Any = get_driver(Provider.CLOUDSTACK)(
        served["CLOUDSTACK_KEY"],
        served["CLOUDSTACK_SECRET"],
        url=served["CLOUDSTACK_ENDPOINT"],
        secure=False,
    )
    driver.connection.poll_interval = 0.05

    locations = {loc.name: loc for loc in driver.list_locations()}
    assert set(locations) == {"sim-gva-1", "sim-zrh-1"}
    images = {img.name: img for img in driver.list_images(location=locations["sim-gva-1"])}
    assert "Flatcar Container Linux stable" in images
    sizes = {s.name: s for s in driver.list_sizes()}
    assert sizes["Small"].ram == 2048

    driver.ex_create_security_group("web", description="web servers")
    driver.ex_authorize_security_group_ingress("web", "tcp", "0.0.0.0/0", 22, 22)
    group = next(g for g in driver.ex_list_security_groups() if g["name"] == "web")
    assert group["ingressrule"][0]["startport"] == 22

    driver.import_key_pair_from_string("demo", PUBLIC_KEY)
    assert [k.name for k in driver.list_key_pairs()] == ["demo"]

    userdata = "#cloud-config\nhostname: web-1\n"
    node = driver.create_node(
        name="web-1",
        size=sizes["Small"],
        image=images["Flatcar Container Linux stable"],
        location=locations["sim-gva-1"],
        ex_security_groups=["web"],
        ex_keyname="demo",
        ex_userdata=userdata,
        ex_start_vm=True,
    )
    driver.ex_create_tags([node.id], "UserVm", {"stackfleet:cluster": "demo"})

    listed = next(n for n in driver.list_nodes() if n.id == node.id)
    assert listed.state == "running"
    assert listed.private_ips and listed.private_ips[0].startswith("10.11.")
    assert listed.extra["tags"] == {"stackfleet:cluster": "demo"}
    assert listed.extra["key_name"] == "demo"
    assert listed.extra["security_group"] == ["web"]
    got = driver._sync_request(
        command="getVirtualMachineUserData", params={"virtualmachineid": node.id}
    )["virtualmachineuserdata"]["userdata"]
    assert base64.b64decode(got).decode() == userdata

    assert driver.destroy_node(listed, ex_expunge=True)
    assert all(n.id != node.id for n in driver.list_nodes())
