"""How CloudStack measures userdata: in base64 characters (vm.userdata.max.length).

Light on purpose (no HTTP, no libcloud): `validate` and `render` measure with it offline.
"""

from __future__ import annotations

import base64

from stackfleet.provisioners.base import UserdataRule

# vm.userdata.max.length's default. POSTed deploys and updates are held to it; a GET
# would refuse 4096 characters or more, which is why userdata is always POSTed.
DEFAULT_LIMIT = 32768


def encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def size(text: str) -> int:
    """What the cloud compares with vm.userdata.max.length."""
    return len(encode(text))


RULE = UserdataRule(unit="base64 characters", default_limit=DEFAULT_LIMIT, size=size)
