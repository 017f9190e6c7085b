"""The server's signature check, following CloudStack 4.18's ApiServer.verifyRequest step by step.

Written from the server's rules, not from any client's signing code (stackfleet's own client
signs in provisioners/cloudstack/signing.py; nothing here imports or mirrors it), so that a
client only passes if it signs as a real CloudStack expects:

1. the parameter names as received, sorted with Java's `Collections.sort` (String.compareTo:
   UTF-16 code units, so case-sensitive: "apiKey" < "command");
2. every name but `signature` (matched ignoring case) becomes `name=value`, the value passed
   through `java.net.URLEncoder.encode(value, "UTF-8")` and then `replaceAll("\\+", "%20")`;
3. joined with '&', the whole string lower-cased (`String.toLowerCase`);
4. HMAC-SHA1 keyed with the user's secret key, base64-encoded (commons-codec), compared in
   constant time with the `signature` parameter as the servlet decoded it;
5. `signatureVersion=3` (exactly "3") requires `expires`, parsed with SimpleDateFormat
   "yyyy-MM-dd'T'HH:mm:ssZ" (an RFC 822 offset such as +0000), and refuses it once past.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone


def _java_sort_key(name: str) -> list[int]:
    # String.compareTo compares UTF-16 code units, which differs from code points above U+FFFF.
    encoded = name.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def url_encoder(value: str) -> str:
    """java.net.URLEncoder.encode(value, "UTF-8"): a-z A-Z 0-9 . - * _ kept, ' ' -> '+',
    every other byte of the UTF-8 encoding as %XY with upper-case hex digits."""
    out: list[str] = []
    for byte in value.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in ".-*_"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def unsigned_request(params: Mapping[str, str]) -> str:
    """The string ApiServer signs: sorted names, encoded values, '+' -> %20, lower-cased."""
    pieces = []
    for name in sorted(params, key=_java_sort_key):
        if name.lower() == "signature":
            continue
        pieces.append(name + "=" + url_encoder(params[name]).replace("+", "%20"))
    return "&".join(pieces).lower()


def sign(params: Mapping[str, str], secret: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), unsigned_request(params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


_EXPIRES = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{1,2}):(\d{1,2})([+-])(\d{2})(\d{2})"
)


def parse_expires(value: str) -> datetime | None:
    """SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ssZ").parse: an RFC 822 offset (+0000) is needed;
    like Java's parse(String), text after the date is ignored."""
    match = _EXPIRES.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = timedelta(hours=int(match.group(8)), minutes=int(match.group(9)))
    tz = timezone(-offset if match.group(7) == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None


def verify(params: Mapping[str, str], secret: str, now: datetime | None = None) -> bool:
    signature = None
    signature_version = None
    expires = None
    for name, value in params.items():
        lowered = name.lower()
        if lowered == "signature":
            signature = value
        elif lowered == "signatureversion":
            signature_version = value
        elif lowered == "expires":
            expires = value
    if not signature:
        return False
    if signature_version == "3":
        if expires is None:
            return False
        when = parse_expires(expires)
        if when is None or when < (now or datetime.now(UTC)):
            return False
    return hmac.compare_digest(signature.encode("utf-8"), sign(params, secret).encode("utf-8"))
