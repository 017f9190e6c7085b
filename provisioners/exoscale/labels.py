"""stackfleet's tags as exoscale labels, both ways: one table for the mapping.

Of what stackfleet makes, exoscale labels instances and private networks; security groups,
anti-affinity groups and SSH keys have no labels. So:

- a machine's tags are its instance's labels: `stackfleet:role` -> `stackfleet-role`
  (a colon is not a label-key character on exoscale: letters, digits and `-` are safe);
- the cluster's own tags (expiry, settings, CA fingerprints) are the labels of the cluster's
  record, a labelled resource of its own (provisioners/exoscale/record.py), the same mapping.

`status` and `down` therefore find everything by label (instances) and by name (the groups
and the key), from any machine with the credentials.
"""

from __future__ import annotations

from collections.abc import Mapping

TAG_PREFIX = "stackfleet:"
MACHINE_PREFIX = "stackfleet-"


def label(tag: str) -> str:
    """`stackfleet:role` -> `stackfleet-role`; a key of another namespace is kept as is."""
    return MACHINE_PREFIX + tag.removeprefix(TAG_PREFIX) if tag.startswith(TAG_PREFIX) else tag


def to_labels(tags: Mapping[str, str]) -> dict[str, str]:
    return {label(k): v for k, v in tags.items()}


def to_tags(labels: Mapping[str, str]) -> dict[str, str]:
    """stackfleet's tags from a resource's labels (labels of other tools are left out)."""
    return {
        TAG_PREFIX + k.removeprefix(MACHINE_PREFIX): v
        for k, v in labels.items()
        if k.startswith(MACHINE_PREFIX)
    }


def selector(labels: Mapping[str, str]) -> str:
    """list-instances' `labels` filter: `k=v k2=v2`, the form exoscale's own tools send."""
    return " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
