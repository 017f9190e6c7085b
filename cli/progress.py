"""Show the engine's events: a live rich display at a terminal, plain lines in CI logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click


class PlainEvents:
    """One line per phase, with the elapsed time: readable in a CI log."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._last_progress: tuple[str, int] | None = None

    def phase(self, text: str) -> None:
        click.echo(f"[{time.monotonic() - self.started:6.1f}s] {text}", err=True)

    def progress(self, what: str, done: int, total: int) -> None:
        if (what, done) != self._last_progress and done:
            self._last_progress = (what, done)
            self.phase(f"  {what}: {done}/{total} done")

    @contextmanager
    def paused(self) -> Iterator[None]:
        yield


class RichEvents:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._current: Any = None
        self.started = time.monotonic()

    def phase(self, text: str) -> None:
        if self._current is not None:
            self._progress.update(self._current, completed=1, total=1)
        self._current = self._progress.add_task(text, total=None)

    def progress(self, what: str, done: int, total: int) -> None:
        task = self._tasks.get(what)
        if task is None:
            task = self._tasks[what] = self._progress.add_task(f"  waiting for {what}", total=total)
        self._progress.update(task, completed=done, total=total)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing (a question must stay visible), then go on."""
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()

    def close(self) -> None:
        if self._current is not None:
            self._progress.update(self._current, completed=1, total=1)


@contextmanager
def events() -> Iterator[PlainEvents | RichEvents]:
    if not sys.stderr.isatty():
        yield PlainEvents()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),  # stdout stays clean for --output json
        transient=False,
    ) as progress:
        shown = RichEvents(progress)
        try:
            yield shown
        finally:
            shown.close()
