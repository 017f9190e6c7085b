"""docs/output.md's JSON examples, and their shape, for the tests that hold commands to them
(imported by name, as sf_testkit is).

A shape is the keys of every object, through lists (a list's shape is its first item's);
scalar values vanish, so an example's values never need to match a run's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sf_testkit import REPO

DOC = REPO / "docs" / "output.md"


def documented(heading: str) -> Any:
    """The first ```json block under `## <heading>`, e.g. documented("`plan`")."""
    text = DOC.read_text()
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"docs/output.md has no section '## {heading}'"
    block = re.search(r"```json\n(.*?)```", section.group(1), re.S)
    assert block, f"docs/output.md '## {heading}' has no json example"
    return json.loads(block.group(1))


def shape(value: Any) -> Any:
    """Keys of objects, recursively; a list's shape is its first item's; scalars vanish."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def same_shape(doc: Any, real: Any, where: str = "") -> None:
    """`real` has the keys `doc` has, object by object (an empty list on either side passes)."""
    if isinstance(doc, dict):
        assert isinstance(real, dict), where
        assert sorted(doc) == sorted(real), f"{where or 'top'}: keys differ"
        for key in doc:
            same_shape(doc[key], real[key], f"{where}.{key}")
    elif isinstance(doc, list) and doc and real:
        same_shape(doc[0], real[0], f"{where}[0]")
