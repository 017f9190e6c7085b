"""SSH key material for createSSHKeyPair/registerSSHKeyPair.

createSSHKeyPair returns a fresh RSA private key as CloudStack does: PKCS#1 PEM
("BEGIN RSA PRIVATE KEY"), made by `cryptography`. The fingerprint is the MD5 of the
OpenSSH public-key blob, colon-separated, as CloudStack shows it (`ssh-keygen -E md5 -lf`
prints the same hex after "MD5:").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct


def generate_rsa(bits: int = 2048) -> tuple[str, str]:
    """(PKCS#1 PEM private key, OpenSSH public key line "ssh-rsa AAAA...")."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pem.decode("ascii"), public.decode("ascii")


def fingerprint(public_key: str) -> str | None:
    """MD5 fingerprint of an OpenSSH public key line, or None if it is not one.

    Any key type is accepted whose blob names the type the line names (CloudStack stores
    ed25519, ecdsa and rsa keys alike), so this reads the blob's type, not the key.
    """
    parts = public_key.strip().split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return None
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != parts[0]:
        return None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
