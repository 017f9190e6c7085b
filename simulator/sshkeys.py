"""SSH key material for createSSHKeyPair/registerSSHKeyPair with the standard library only.

createSSHKeyPair returns a fresh RSA private key, as CloudStack does; the fingerprint is
the MD5 of the OpenSSH public-key blob, colon-separated, as CloudStack shows it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _probable_prime(bits: int) -> int:
    while True:
        n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
        if any(n % p == 0 for p in _SMALL_PRIMES):
            continue
        if _miller_rabin(n, 24):
            return n


def _miller_rabin(n: int, rounds: int) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_len(len(body)) + body


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _ssh_mpint(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return struct.pack(">I", len(raw)) + raw


def _ssh_string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def generate_rsa(bits: int = 2048) -> tuple[str, str]:
    """(PKCS#1 PEM private key, OpenSSH public key line)."""
    e = 65537
    while True:
        p, q = _probable_prime(bits // 2), _probable_prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    n, d = p * q, pow(e, -1, phi)
    fields = [0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p)]
    body = b"".join(_der_int(f) for f in fields)
    der = b"\x30" + _der_len(len(body)) + body
    b64 = base64.b64encode(der).decode()
    pem = "\n".join(
        ["-----BEGIN RSA PRIVATE KEY-----"]
        + [b64[i : i + 64] for i in range(0, len(b64), 64)]
        + ["-----END RSA PRIVATE KEY-----", ""]
    )
    blob = _ssh_string(b"ssh-rsa") + _ssh_mpint(e) + _ssh_mpint(n)
    return pem, "ssh-rsa " + base64.b64encode(blob).decode()


def fingerprint(public_key: str) -> str | None:
    """MD5 fingerprint of an OpenSSH public key line, or None if it is not one."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != parts[0]:
        return None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
