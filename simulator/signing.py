"""Request signatures exactly as CloudStack's ApiServer.verifyRequest computes them.

Parameter names sorted case-sensitively (Java's Collections.sort), values encoded by
java.net.URLEncoder with '+' turned into %20, the whole string lower-cased, HMAC-SHA1,
base64. A client that sorts or encodes differently fails here as on a real cloud.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

# URLEncoder leaves only these unencoded (space becomes '+', which CloudStack maps to %20).
_JAVA_SAFE = "-_.*"


def java_urlencode(value: str) -> str:
    # Python always leaves '~' alone; URLEncoder encodes it.
    return quote(value, safe=_JAVA_SAFE).replace("~", "%7E")


def string_to_sign(params: Mapping[str, str]) -> str:
    parts = [
        f"{name}={java_urlencode(params[name])}"
        for name in sorted(params)
        if name.lower() != "signature"
    ]
    return "&".join(parts).lower()


def sign(params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(secret.encode(), string_to_sign(params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def parse_expires(value: str) -> datetime | None:
    """CloudStack parses `expires` as yyyy-MM-dd'T'HH:mm:ssZ (e.g. 2026-01-01T12:00:00+0000)."""
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def verify(params: Mapping[str, str], secret: str, now: datetime | None = None) -> bool:
    given = _get_ci(params, "signature")
    if not given:
        return False
    if _get_ci(params, "signatureversion") == "3":
        expires = _get_ci(params, "expires")
        when = parse_expires(expires) if expires else None
        current = now or datetime.now(UTC)
        if when is None or when < current:
            return False
    return hmac.compare_digest(given.encode(), sign(params, secret).encode())


def _get_ci(params: Mapping[str, str], name: str) -> str | None:
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None
