"""The server's check of an EXO2-HMAC-SHA256 signature, as the API's own spec describes it.

The spec's "API Request Signature" topic (in exoscale/openapi.json) defines the message, lines
joined with "\\n", every line present even when empty:

1. the method and the URL's path (as sent, percent-encoding kept), separated by one space;
2. the request body, bytes as sent;
3. the values of the query parameters named in the header's `signed-query-args=` pragma
   (`p1;p2`), in that order, concatenated without separator;
4. header values (none are signed today: an empty line);
5. the `expires` UNIX timestamp.

The signature is base64(HMAC-SHA256(secret, message)), sent as
`Authorization: EXO2-HMAC-SHA256 credential=<key>[,signed-query-args=<p1;p2>],expires=<ts>,
signature=<b64>`. The official client (requests-exoscale-auth's ExoscaleV2Auth) signs this way;
nothing here imports it. A query parameter the signature does not cover is refused: otherwise
anyone on the path could add a filter to a signed request. A parameter given twice is left out of
the message (its name is still listed), as the official client does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SCHEME = "EXO2-HMAC-SHA256"


class SignatureError(Exception):
    """Why a request is refused (403); the text names no secret."""


@dataclass(frozen=True)
class Authorization:
    credential: str
    expires: int
    signature: str
    signed_query_args: tuple[str, ...]


def parse(header: str | None) -> Authorization:
    if not header:
        raise SignatureError("missing Authorization header (EXO2-HMAC-SHA256 expected)")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise SignatureError(f"unsupported authorization scheme {scheme!r}: {SCHEME} expected")
    fields: dict[str, str] = {}
    for piece in rest.split(","):
        name, sep, value = piece.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed Authorization header field {name!r}")
        fields[name] = value
    for required in ("credential", "expires", "signature"):
        if not fields.get(required):
            raise SignatureError(f"Authorization header lacks {required}=")
    try:
        expires = int(fields["expires"])
    except ValueError:
        raise SignatureError("expires= is not a UNIX timestamp") from None
    signed = tuple(a for a in fields.get("signed-query-args", "").split(";") if a)
    return Authorization(fields["credential"], expires, fields["signature"], signed)


def message(
    method: str,
    raw_path: str,
    body: bytes,
    query: Mapping[str, Sequence[str]],
    signed_query_args: Sequence[str],
    expires: int,
) -> bytes:
    values = "".join(query[name][0] for name in signed_query_args if len(query.get(name, ())) == 1)
    return b"\n".join(
        [
            f"{method} {raw_path}".encode(),
            body,
            values.encode("utf-8"),
            b"",
            str(expires).encode(),
        ]
    )


def sign(secret: str, msg: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).digest()
    return base64.standard_b64encode(digest).decode("ascii")


def verify(
    header: str | None,
    method: str,
    raw_path: str,
    body: bytes,
    query: Mapping[str, Sequence[str]],
    credentials: Mapping[str, str],
    now: float | None = None,
) -> str:
    """The API key of a correctly signed, unexpired request; SignatureError otherwise."""
    auth = parse(header)
    secret = credentials.get(auth.credential)
    if secret is None:
        raise SignatureError("invalid API key")
    if auth.expires < (time.time() if now is None else now):
        raise SignatureError("request expired (expires= is in the past)")
    unsigned = sorted(set(query) - set(auth.signed_query_args))
    if unsigned:
        raise SignatureError(f"query parameter(s) not signed: {', '.join(unsigned)}")
    expected = sign(
        secret, message(method, raw_path, body, query, auth.signed_query_args, auth.expires)
    )
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise SignatureError("invalid request signature")
    return auth.credential
