"""`stackfleet simulator serve` as a separate OS process, for the real-client tests.

The process is started with `--port 0` on a state file, its first three stdout lines give the
endpoint and credentials, and it is stopped (SIGTERM, then SIGKILL if need be) on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serve(state: Path, latency: str = "default=0") -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackfleet",
            "simulator",
            "serve",
            "--port",
            "0",
            "--state",
            str(state),
            "--latency",
            latency,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env: dict[str, str] = {}
        assert proc.stdout is not None
        while len(env) < 3:
            line = proc.stdout.readline()
            assert line, f"simulator exited: {proc.stderr.read() if proc.stderr else ''}"
            name, _, value = line.strip().partition("=")
            env[name] = value
        assert env["CLOUDSTACK_ENDPOINT"].startswith("http://127.0.0.1:")
        yield env
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
