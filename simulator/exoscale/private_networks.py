"""Private networks: create, list, get, update (labels, name, description), delete.

Only their bookkeeping: no instance is attached to one here (stackfleet keeps a cluster's own
record, its labels, on one; see provisioners/exoscale/record.py). Each gets a VXLAN id.
"""

from __future__ import annotations

import uuid
from typing import Any

from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.exoscale.errors import not_found
from stackfleet.simulator.state import Doc

PRIVATE_NETWORK = "private-network"
_FIELDS = ("name", "description", "labels", "netmask", "start-ip", "end-ip")


def _find(call: Call) -> Doc:
    found = call.tx.get(PRIVATE_NETWORK, call.path["id"])
    if found is None:
        raise not_found("private network", call.path["id"])
    return found


def _view(doc: Doc) -> Doc:
    view: dict[str, Any] = {"id": doc["id"], "name": doc["name"], "vni": doc["vni"]}
    view.update({k: doc[k] for k in _FIELDS if doc.get(k) not in (None, "")})
    return view


def create_private_network(call: Call) -> Doc:
    network_id = str(uuid.uuid4())
    vni = 1000 + len(call.tx.all(PRIVATE_NETWORK)) + 1
    doc: Doc = {"id": network_id, "vni": vni, "labels": {}}
    doc.update({k: call.body[k] for k in _FIELDS if k in call.body})
    call.tx.put(PRIVATE_NETWORK, doc)
    return call.start("get-private-network", f"/private-network/{network_id}", network_id)


def list_private_networks(call: Call) -> Doc:
    return {"private-networks": [_view(d) for d in call.tx.all(PRIVATE_NETWORK)]}


def get_private_network(call: Call) -> Doc:
    return _view(_find(call))


def update_private_network(call: Call) -> Doc:
    doc = _find(call)
    doc.update({k: call.body[k] for k in _FIELDS if k in call.body})
    call.tx.put(PRIVATE_NETWORK, doc)
    return call.start("get-private-network", f"/private-network/{doc['id']}", doc["id"])


def delete_private_network(call: Call) -> Doc:
    doc = _find(call)
    call.tx.delete(PRIVATE_NETWORK, doc["id"])
    return call.start("get-private-network", f"/private-network/{doc['id']}", doc["id"])
