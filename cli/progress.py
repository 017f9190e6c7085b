"""Show the engine's events as terraform does, at a terminal and in a CI log alike.

Every step is a line stamped with the time since the command began; counts are in
machines ("9 machines to start: 3/9"); and while a step lasts, a line says at least every
PROGRESS_INTERVAL_S what it still waits for: "still waiting for 9 machines to start: 3/9
[40s elapsed]". The last line says how long it all took.

At a terminal the same lines scroll above one status line (spinner, what is awaited,
the time), which rich redraws in place and removes at the end. Whatever else is written
to stderr meanwhile (a note, a warning) is printed above it, never under it; a question
(`confirm`) pauses it, so the question and its [y/N] stay on the screen.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import click

from stackfleet.errors import BadInput

if TYPE_CHECKING:
    from rich.file_proxy import FileProxy

# At least this often (seconds) a long wait says it is still waiting; the env var makes
# it shorter for tests and demos, or longer for a quiet log.
PROGRESS_INTERVAL_S = 10.0
INTERVAL_ENV = "STACKFLEET_PROGRESS_INTERVAL"
# How long closing waits for the ticker thread (it wakes at least every second).
TICKER_JOIN_S = 5.0
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def interval_s() -> float:
    value = os.environ.get(INTERVAL_ENV, "").strip()
    if not value:
        return PROGRESS_INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise BadInput(f"{INTERVAL_ENV}={value!r}: give a number of seconds above 0, e.g. 10")
    return seconds


def stamp(seconds: float) -> str:
    """A line's time since the command began: 0.4s, 2m13s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    return elapsed(seconds)


def elapsed(seconds: float) -> str:
    """Whole seconds, as terraform writes them: 40s, 2m13s, 1h02m."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Display:
    """The state both forms show (the step, the wait within it, since when) and the ticker
    that speaks when nothing else has for `interval` seconds. Lines go out through
    `_write`; the engine calls `phase` and `progress` (provisioners.events.Events)."""

    def __init__(self, interval: float, clock: Any = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self.started = clock()
        self._lock = threading.RLock()
        self._phase: str | None = None
        self._phase_since = self.started
        self._wait: tuple[str, int, int] | None = None  # (what, done, total), not yet all done
        self._wait_since = self.started
        self._last_count: tuple[str, int, int] | None = None
        self._last_line = self.started
        self._paused = 0
        self._closed = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="stackfleet-progress", daemon=True)

    # --- the engine's side --------------------------------------------------------
    def phase(self, text: str) -> None:
        with self._lock:
            if text == self._phase:  # a poll loop saying it again: the ticker speaks for it
                return
            now = self._clock()
            self._phase, self._phase_since = text, now
            self._wait = self._last_count = None  # a new step: its counts start afresh
            self._line(text, now)

    def progress(self, what: str, done: int, total: int) -> None:
        with self._lock:
            if total <= 0 or (what, done, total) == self._last_count:
                return
            now = self._clock()
            if self._wait is None or self._wait[0] != what:
                self._wait_since = now
            self._last_count = (what, done, total)
            self._wait = (what, done, total) if done < total else None
            if done:
                self._line(f"  {what}: {done}/{total}", now)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Say nothing meanwhile (a question must stay visible), then go on."""
        with self._lock:
            self._paused += 1
            if self._paused == 1:
                self._suspend()
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                if self._paused == 0 and not self._closed:
                    self._last_line = self._clock()  # the answer took time: not a silence
                    self._resume()

    # --- what is shown ------------------------------------------------------------
    def current(self) -> tuple[str, float]:
        """What is awaited now, and since when (the ticker's and the status line's text)."""
        if self._wait is not None:
            what, done, total = self._wait
            return f"waiting for {what}: {done}/{total}", self._wait_since
        return self._phase or "starting", self._phase_since

    def _still(self, now: float) -> str:
        text, since = self.current()
        return f"still {text} [{elapsed(now - since)} elapsed]"

    def _line(self, text: str, now: float) -> None:
        self._last_line = now
        self._write(f"[{stamp(now - self.started):>7}] {text}")

    def _tick(self) -> None:
        step = min(self.interval / 4, 1.0)
        while not self._stop.wait(step):
            with self._lock:
                if self._closed or self._paused or self._phase is None:
                    continue
                now = self._clock()
                if now - self._last_line >= self.interval:
                    self._line(self._still(now), now)

    # --- life ---------------------------------------------------------------------
    def start(self) -> None:
        self._ticker.start()

    def close(self, finished: bool) -> None:
        """Stop for good: nothing is printed after this returns."""
        with self._lock:
            if finished and self._phase is not None and not self._paused:
                self._write(f"done in {stamp(self._clock() - self.started)}")
            self._closed = True
            if not self._paused:
                self._suspend()
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(TICKER_JOIN_S)

    def _write(self, line: str) -> None:
        raise NotImplementedError

    def _suspend(self) -> None:
        """Hook: stop drawing (a pause, or the end)."""

    def _resume(self) -> None:
        """Hook: draw again after a pause."""


class PlainDisplay(Display):
    """Lines only: a CI log, a pipe, -v (whose log lines must not mix with a status line)."""

    def _write(self, line: str) -> None:
        click.echo(line, err=True)


class QuietDisplay(Display):
    """-q: nothing (errors and the result are printed elsewhere)."""

    def start(self) -> None:
        pass

    def _write(self, line: str) -> None:
        pass


class TerminalDisplay(Display):
    """The lines, and below them one status line that rich redraws (never wrapped, so
    never drawn twice) and takes away at the end (transient)."""

    def __init__(self, interval: float, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(interval)
        self._stream = stream
        self._console = Console(file=stream)
        # We redirect stderr ourselves (see _LinesAbove): rich's own proxy lets click
        # write around it, under the status line, where the next redraw erases it.
        self._live = Live(
            _Status(self),
            console=self._console,
            transient=True,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._saved: list[tuple[Any, str, Any]] = []

    def _write(self, line: str) -> None:
        from rich.text import Text

        self._console.print(Text(line), soft_wrap=True)

    def start(self) -> None:
        self._resume()
        super().start()

    def _resume(self) -> None:
        self._live.start(refresh=True)
        above = _lines_above()(self._console, self._stream)
        self._swap(sys, "stderr", above)
        if sys.stdout.isatty():  # the same screen; a piped stdout (-o json | jq) stays as is
            self._swap(sys, "stdout", _lines_above()(self._console, sys.stdout))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream:
                self._swap(handler, "stream", above)

    def _swap(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def _suspend(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            current = getattr(owner, name)
            if isinstance(current, _lines_above()):
                current.flush()
            setattr(owner, name, value)
        self._live.stop()


@functools.cache
def _lines_above() -> type[FileProxy]:
    """The class, made on first use: importing this module does not import rich."""
    from rich.file_proxy import FileProxy

    class LinesAbove(FileProxy):
        """A stream whose lines rich prints above the status line. It names the real
        stream's encoding: rich's proxy has none, so click takes it for misconfigured
        and writes to the buffer underneath instead (under the status line, erased)."""

        def __init__(self, console: Any, file: IO[str]) -> None:
            super().__init__(console, file)
            self._real = file

        @property
        def encoding(self) -> str:  # type: ignore[override]
            return str(getattr(self._real, "encoding", None) or "utf-8")

        @property
        def errors(self) -> str | None:  # type: ignore[override]
            return getattr(self._real, "errors", None)

        @property
        def buffer(self) -> Any:
            raise AttributeError("buffer")  # bytes would pass under the status line

    return LinesAbove


class _Status:
    """The status line: spinner, what is awaited and for how long, the total time."""

    def __init__(self, display: Display) -> None:
        self.display = display

    def __rich__(self) -> Any:
        from rich.text import Text

        d = self.display
        now = d._clock()
        # Read without the display's lock: rich renders under its own lock, and the
        # display holds its lock while it prints through rich.
        text, since = d.current()
        frame = SPINNER[int(now * 10) % len(SPINNER)]
        line = f"{frame} {text} [{elapsed(now - since)}, {elapsed(now - d.started)} in all]"
        return Text(line, no_wrap=True, overflow="ellipsis")


_active: list[Display] = []  # the displays shown now, innermost last


@contextmanager
def display_paused() -> Iterator[None]:
    """Around a question: the display shown now (if any) stops drawing meanwhile."""
    if not _active:
        yield
        return
    with _active[-1].paused():
        yield


@contextmanager
def events() -> Iterator[Display]:
    """The display for this run: quiet (-q), a terminal's, or plain lines."""
    from stackfleet.cli.common import settings

    opts = settings()
    interval = interval_s()
    shown: Display
    if getattr(opts, "quiet", False):
        shown = QuietDisplay(interval)
    elif _is_terminal(sys.stderr) and not (opts.verbose or opts.debug):
        shown = TerminalDisplay(interval, sys.stderr)
    else:
        shown = PlainDisplay(interval)
    shown.start()
    _active.append(shown)
    finished = False
    try:
        yield shown
        finished = True
    finally:
        _active.remove(shown)
        shown.close(finished)


def _is_terminal(stream: IO[str]) -> bool:
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"
