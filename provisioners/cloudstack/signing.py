"""Request signing exactly as CloudStack's ApiServer verifies it.

The server sorts parameter names case-sensitively, URL-encodes each value as Java's
URLEncoder does (then '+' -> '%20'), joins them with '&', lower-cases the whole
string and compares base64(HMAC-SHA1(secret, string)). libcloud lower-cases names
before sorting and leaves '[', ']' and '~' unencoded, which differs on names with
capitals and on such values: so we sign ourselves and hand libcloud the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

# Java's URLEncoder leaves only these unencoded (besides letters and digits).
_JAVA_SAFE = "-_.*"


def java_urlencode(value: str) -> str:
    # Python's quote never encodes '~'; Java's URLEncoder does.
    return quote(value, safe=_JAVA_SAFE).replace("~", "%7E")


def canonical_string(params: Mapping[str, str]) -> str:
    pairs = [f"{name}={java_urlencode(params[name])}" for name in sorted(params)]
    return "&".join(pairs).lower()


def sign(params: Mapping[str, str], secret: str) -> str:
    unsigned = {k: v for k, v in params.items() if k != "signature"}
    digest = hmac.new(secret.encode(), canonical_string(unsigned).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def expiry_params(now: datetime | None = None, valid_for_s: int = 600) -> dict[str, str]:
    """signatureversion=3: the request is refused after `expires`, so a replay is short-lived."""
    moment = (now or datetime.now(UTC)) + timedelta(seconds=valid_for_s)
    return {
        "signatureversion": "3",
        "expires": moment.strftime("%Y-%m-%dT%H:%M:%S+0000"),
    }
