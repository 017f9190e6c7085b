"""The simulator's SSH key pairs, read by the tools that will use them.

Real: the simulator over HTTP on loopback, keys made by `cryptography`, then loaded by
`cryptography`, paramiko and OpenSSH's `ssh-keygen` (its fingerprints are the reference).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sim_apiclient import Api


def _ssh_keygen_md5(public_line: str, tmp_path: Path) -> str:
    """`ssh-keygen -E md5 -lf` prints "2048 MD5:51:9f:... comment (RSA)"; CloudStack shows
    the part after "MD5:"."""
    path = tmp_path / "key.pub"
    path.write_text(public_line + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-E", "md5", "-lf", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1].removeprefix("MD5:")


def test_created_key_loads_everywhere_and_its_fingerprint_is_openssh_s(
    api: Api, tmp_path: Path
) -> None:
    created = api("createSSHKeyPair", name="made")["keypair"]
    pem = created["privatekey"]
    # CloudStack hands out PKCS#1 PEM (conformance: createSSHKeyPair_default.json).
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048 and key.public_key().public_numbers().e == 65537
    loaded = paramiko.RSAKey.from_private_key_file(_write_private(tmp_path, pem))
    assert loaded.get_bits() == 2048

    # The public half as OpenSSH derives it from the private file.
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(tmp_path / "id_rsa")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert derived.split()[1] == loaded.get_base64()
    assert created["fingerprint"] == _ssh_keygen_md5(derived, tmp_path)
    listed = api("listSSHKeyPairs", name="made")["sshkeypair"]
    assert [k["fingerprint"] for k in listed] == [created["fingerprint"]]


def test_each_created_key_is_new(api: Api) -> None:
    first = api("createSSHKeyPair", name="one")["keypair"]
    second = api("createSSHKeyPair", name="two")["keypair"]
    assert first["privatekey"] != second["privatekey"]
    assert first["fingerprint"] != second["fingerprint"]


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_registered_key_fingerprint_matches_ssh_keygen(api: Api, tmp_path: Path, kind: str) -> None:
    private = tmp_path / f"id_{kind}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f", str(private)],
        check=True,
    )
    public = private.with_suffix(".pub").read_text().strip()
    registered = api("registerSSHKeyPair", name=kind, publickey=public)["keypair"]
    assert registered["fingerprint"] == _ssh_keygen_md5(public, tmp_path)
    # The same key under another name: refused, as CloudStack refuses it.
    status, body = api.raw("registerSSHKeyPair", name=f"{kind}-again", publickey=public)
    assert status == 431
    assert "already exists" in body["registersshkeypairresponse"]["errortext"]


@pytest.mark.parametrize(
    "public",
    [
        "ssh-rsa",  # no key
        "ssh-rsa not*base64",
        # a valid ed25519 blob under another type's name
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ],
)
def test_a_key_that_is_not_one_is_refused(api: Api, public: str) -> None:
    status, body = api.raw("registerSSHKeyPair", name="bad", publickey=public)
    assert status == 431
    assert body["registersshkeypairresponse"]["errortext"] == "Public key is invalid"


def _write_private(tmp_path: Path, pem: str) -> str:
    path = tmp_path / "id_rsa"
    path.write_text(pem)
    path.chmod(0o600)  # ssh-keygen refuses a private key others can read
    return str(path)
