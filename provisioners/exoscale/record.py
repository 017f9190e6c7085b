"""The cluster's record: its own tags (expiry, settings, CA fingerprints) as the labels of one
private network per cluster, `<cluster>-record`, in the cluster's zone.

CloudStack keeps these tags on the etcd security group; exoscale's security groups carry no
labels and their descriptions can neither change nor hold them (255 characters), so the record
is a resource made for it: a private network with no instance on it costs nothing, and its
labels change in place (update-private-network). It is found by its labels
(`stackfleet-cluster=<name>`, `stackfleet-record=cluster`), made with the first cluster tag and
deleted by `down`, last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackfleet.provisioners.base import CLUSTER_TAG
from stackfleet.provisioners.exoscale import labels
from stackfleet.provisioners.exoscale.client import ExoscaleAPI

RECORD_TAG = "stackfleet:record"
_KIND = {labels.label(RECORD_TAG): "cluster"}
_OWN = (CLUSTER_TAG, RECORD_TAG)


def record_name(cluster: str) -> str:
    return f"{cluster}-record"


@dataclass(frozen=True)
class Record:
    id: str
    cluster: str
    tags: dict[str, str]  # the cluster's tags, without the record's own


def _record(network: Mapping[str, Any]) -> Record | None:
    found = dict(network.get("labels") or {})
    if any(found.get(k) != v for k, v in _KIND.items()):
        return None
    tags = labels.to_tags(found)
    cluster = tags.get(CLUSTER_TAG)
    if not cluster:
        return None
    return Record(network["id"], cluster, {k: v for k, v in tags.items() if k not in _OWN})


def all_records(api: ExoscaleAPI) -> list[Record]:
    networks = api.call("list_private_networks").get("private-networks", [])
    return [r for r in (_record(n) for n in networks) if r is not None]


def find(api: ExoscaleAPI, cluster: str) -> list[Record]:
    """The cluster's records (one, unless two runs raced to make it)."""
    return [r for r in all_records(api) if r.cluster == cluster]


def merged(records: list[Record]) -> dict[str, str]:
    out: dict[str, str] = {}
    for record in sorted(records, key=lambda r: r.id):
        out.update(record.tags)
    return out


def write(
    api: ExoscaleAPI, cluster: str, tags: Mapping[str, str | None]
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Set (None: remove) cluster tags: the operation and the record's labels now, or None
    when nothing changed."""
    found = find(api, cluster)
    current = merged(found)
    wanted = {k: v for k, v in {**current, **tags}.items() if v is not None}
    if found and wanted == current:
        return None
    if not found and not wanted:
        return None
    body = labels.to_labels({**wanted, CLUSTER_TAG: cluster}) | _KIND
    if not found:
        made = api.call(
            "create_private_network",
            name=record_name(cluster),
            description=f"stackfleet: the record of cluster {cluster} (its tags, as labels)",
            labels=body,
        )
        return made, body
    return api.call("update_private_network", id=found[0].id, labels=body), body
