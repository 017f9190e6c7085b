"""`systemd-analyze verify` on rendered units, in a scratch root.

This checks unit *syntax* and references only: the executables named by Exec*= lines are
empty stubs created in the scratch root, and units we depend on but do not ship
(containerd.service, targets) are empty stubs too. Any stderr output counts as a failure,
because systemd-analyze exits 0 on unknown keys.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from stackfleet.errors import StackfleetError

_EXEC = re.compile(r"^Exec[A-Za-z]*=\s*[-@+!:]*(\S+)", re.M)
_DEPS = re.compile(
    r"^(?:Requires|Wants|Conflicts|BindsTo|Requisite|WantedBy|RequiredBy)=(.+)$", re.M
)


# Units every service depends on by default (DefaultDependencies=yes).
_IMPLICIT = ("sysinit.target", "basic.target", "shutdown.target", "multi-user.target")


def _stub_unit(name: str) -> str:
    service = "[Service]\nExecStart=/bin/true\n" if name.endswith(".service") else ""
    return f"[Unit]\nDescription=stub for {name}\n{service}"


class ToolMissing(StackfleetError):
    """A validator needs a tool (systemd-analyze, cloud-init) that is not installed."""


def verify_units(units: dict[str, str]) -> list[str]:
    """Problems reported by systemd-analyze for `units` (name -> content); empty if clean."""
    if not units:
        return []
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise ToolMissing("systemd-analyze not found: install systemd to verify units")
    with tempfile.TemporaryDirectory(prefix="stackfleet-units-") as tmp:
        root = Path(tmp)
        unit_dir = root / "etc/systemd/system"
        unit_dir.mkdir(parents=True)
        for name, content in units.items():
            (unit_dir / name).write_text(content)
        for content in units.values():
            for exe in _EXEC.findall(content):
                stub = root / exe.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
            wanted = [d for deps in _DEPS.findall(content) for d in deps.split()]
            for dep in [*wanted, *_IMPLICIT]:
                if dep not in units and not (unit_dir / dep).exists():
                    (unit_dir / dep).write_text(_stub_unit(dep))
        true = root / "bin/true"
        true.parent.mkdir(parents=True, exist_ok=True)
        true.write_text("#!/bin/sh\n")
        true.chmod(0o755)
        proc = subprocess.run(
            [tool, "verify", f"--root={root}", *sorted(units)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = [ln.replace(str(root), "") for ln in proc.stderr.splitlines() if ln.strip()]
        if proc.returncode != 0 and not lines:
            lines = [f"systemd-analyze verify exited {proc.returncode}"]
        return [f"systemd-analyze: {ln}" for ln in lines]
