"""How exoscale measures user-data: base64 characters, at most create-instance's own
`maxLength` in the OpenAPI spec the official client ships (32768 today, ~24 KB raw).

Light on purpose (no HTTP): `validate` and `render` measure with it offline.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from importlib import resources

from stackfleet.provisioners.base import UserdataRule


@cache
def api_limit() -> int:
    """create-instance's `user-data` maxLength, read from exoscale/openapi.json."""
    spec = json.loads(resources.files("exoscale").joinpath("openapi.json").read_text("utf-8"))
    body = spec["paths"]["/instance"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    limit: int = schema["properties"]["user-data"]["maxLength"]
    return limit


def encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def size(text: str) -> int:
    return len(encode(text))


RULE = UserdataRule(unit="base64 characters", default_limit=api_limit(), size=size)
