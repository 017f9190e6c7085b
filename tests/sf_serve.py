"""`stackfleet simulator serve` as a separate OS process, for the real-client tests.

`serve` starts it with `--port 0` on a state file; its first three stdout lines give the
endpoint and credentials (NAME=value, as a shell exports them), and it is stopped (SIGTERM,
then SIGKILL if need be) on exit. Imported by name, as tests/sf_testkit.py is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The command line up to its options, as a user types `stackfleet simulator serve`.
SERVE = [sys.executable, "-m", "stackfleet", "simulator", "serve"]


@contextmanager
def serve(state: Path, *options: str, latency: str = "default=0") -> Iterator[dict[str, str]]:
    """The served cloud's environment (endpoint, key, secret); `options` as `serve` takes them
    (e.g. "--api", "exoscale")."""
    proc = subprocess.Popen(
        [*SERVE, *options, "--port", "0", "--state", str(state), "--latency", latency],
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
        endpoint = next(value for name, value in env.items() if name.endswith("_ENDPOINT"))
        assert endpoint.startswith("http://127.0.0.1:")
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
