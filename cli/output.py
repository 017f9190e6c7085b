"""Every result goes out through here: a rich table for people, JSON for scripts.

The JSON shapes are documented in docs/output.md, one section per command, and kept
stable (tests/cli/test_cli_json_shapes.py compares them with what the commands print);
tables may change. Notes for people go to stderr, and -q silences them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click


def emit(
    data: Any, output: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if cell in (None, "") else str(cell) for cell in row))
    Console(file=sys.stdout, soft_wrap=True).print(table)


def note(text: str) -> None:
    """A line for people, on stderr so that stdout stays machine-readable; -q silences
    it, so never put a command's result here (that goes through `emit`)."""
    from stackfleet.cli.common import settings

    if not settings().quiet:
        click.echo(text, err=True)
