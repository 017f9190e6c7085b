"""What every command shares: global options, the error edge, the spec and cloud lookup.

The error edge is the one place where typed errors become a one-line message and an
exit code (ExitCode in stackfleet.errors). A traceback is shown only with --debug.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from stackfleet.errors import BadInput, ExitCode, StackfleetError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_SPEC = "stackfleet.yaml"
MAX_MESSAGE = 1500


@dataclass
class Settings:
    """The global options, wherever they were given (`stackfleet -o json status` or
    `stackfleet status -o json`). Read them with `settings()`; `quiet` (-q) means: print
    only errors and the command's result, no phases, progress or notes."""

    output: str = "table"
    verbose: int = 0
    debug: bool = False
    yes: bool = False
    quiet: bool = False


def settings() -> Settings:
    """This run's Settings (defaults outside a click command, e.g. in a library call)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return Settings()
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        # Given before or after the subcommand: the later one wins, a default never does;
        # -v counts on both sides (`stackfleet -v status -v` is -vv).
        source = ctx.get_parameter_source(param.name or name)
        if source is not click.core.ParameterSource.DEFAULT:
            if name == "verbose":
                value = settings().verbose + value
            setattr(settings(), name, value)
        return value

    return callback


def global_options(func: F) -> F:
    """--output, -q, -v, --debug, --yes: accepted on the group (before the command) and
    on every command (after it)."""
    options = [
        click.option(
            "--output",
            "-o",
            type=click.Choice(["table", "json"]),
            default="table",
            expose_value=False,
            callback=_remember("output"),
            help="table for people, json for scripts (a stable, documented shape).",
        ),
        click.option(
            "--quiet",
            "-q",
            is_flag=True,
            expose_value=False,
            callback=_remember("quiet"),
            help="Print only errors and the result: no phases, progress or notes.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_remember("verbose"),
            help="Log each API call (secrets redacted). Twice: more.",
        ),
        click.option(
            "--debug",
            is_flag=True,
            expose_value=False,
            callback=_remember("debug"),
            help="Show a traceback on failure, and debug logs.",
        ),
        click.option(
            "--yes",
            "-y",
            is_flag=True,
            expose_value=False,
            callback=_remember("yes"),
            help="Do not ask for confirmation.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def spec_option(func: F) -> F:
    return click.option(
        "--file",
        "-f",
        "spec_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_SPEC,
        envvar="STACKFLEET_SPEC",
        show_default=True,
        help="The cluster spec (YAML). Env: STACKFLEET_SPEC.",
    )(func)


def handle_errors(func: F) -> F:
    """Turn every failure into one line on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = settings()
        _configure_logging(opts)
        _phase[0] = "running"
        try:
            result = func(*args, **kwargs)
            _phase[0] = "ending"
            _done_ignore_ctrl_c()
            return result
        except StackfleetError as exc:
            _fail(str(exc), exc.exit_code, opts)
        except KeyboardInterrupt as exc:
            # Ctrl-C, or SIGTERM / SIGHUP turned into the same exception (see below): the
            # engine's `finally` blocks have run (the lock is released) on the way here.
            _phase[0] = "ending"
            _report(interrupted_message(exc), opts)
            if _installed:
                # The program: do not wait for worker threads. The interrupt may have hit
                # a thread pool between starting a worker and registering it, and the
                # interpreter would then wait for that worker forever, deaf to signals.
                # What a worker was sending is what a kill -9 leaves: the next run adopts it.
                _exit_now(interrupted_code(exc))
            sys.exit(interrupted_code(exc))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # the last line of defence: still one line, still non-zero
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
                ExitCode.CLOUD_FAILURE,
                opts,
            )
        finally:
            _phase[0] = "ending"  # also on click's own exits (Abort, usage errors)

    return wrapper  # type: ignore[return-value]


def _done_ignore_ctrl_c() -> None:
    """The work is done and reported: a Ctrl-C (or SIGTERM, SIGHUP) during interpreter
    shutdown (joining worker threads) must not turn success into a traceback or a death by
    a signal. Only when we are the program (`stackfleet` / `python -m stackfleet`), never
    inside a host like pytest."""
    import threading

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    ours = (spec is not None and spec.name == "stackfleet.__main__") or Path(
        sys.argv[0] if sys.argv else ""
    ).name == "stackfleet"
    if ours and threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


# --- signals: SIGTERM (CI cancelling a job) and SIGHUP (the terminal gone) stop a run as
# Ctrl-C does. The handler raises `Interrupted`, a KeyboardInterrupt, in the main thread:
# every path that already unwinds a Ctrl-C (the lock's release, the PKI's clean-up, the
# re-run's adoption of what exists) handles them the same way, and the error edge prints
# the one "interrupted" line. Exit: 130 for SIGINT and SIGHUP, 143 (128 + 15) for SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPTED_MESSAGE = "nothing is lost; run the same command again to continue"


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the main thread was (as Python raises Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupted_code(exc: BaseException) -> int:
    if isinstance(exc, Interrupted) and exc.signum == signal.SIGTERM:
        return 128 + int(signal.SIGTERM)  # 143: what a CI runner expects of SIGTERM
    return int(ExitCode.INTERRUPTED)


def interrupted_message(exc: BaseException) -> str:
    if isinstance(exc, Interrupted) and exc.signum != signal.SIGINT:
        return f"interrupted ({signal.Signals(exc.signum).name}): {INTERRUPTED_MESSAGE}"
    return f"interrupted: {INTERRUPTED_MESSAGE}"


_stopping: list[int] = []  # the stop signals received, first one first
# Where the program is: "starting" (parsing, importing: nothing touched yet), "running"
# (inside a command, under the error edge) or "ending" (reported; shutting down).
_phase = ["starting"]


def _on_stop_signal(signum: int, frame: Any) -> None:
    first = not _stopping
    _stopping.append(signum)
    if not first and len(_stopping) >= 3 and _phase[0] != "ending":
        # A third one while the clean-up still runs (a cloud that does not answer): the
        # person at the terminal means it. The lock, if left, is taken over as stale.
        sys.stderr.write("error: interrupted again: stopping now, without cleaning up\n")
        sys.stderr.flush()
        _exit_now(interrupted_code(Interrupted(_stopping[0])))
    if not first or _phase[0] == "ending":
        # Already stopping, or done: a second signal (CI runners follow SIGINT with
        # SIGTERM) must not cut the clean-up short (the lock's release in a `finally`),
        # nor turn a reported result into a traceback while worker threads are joined.
        return
    exc = Interrupted(signum)
    if _phase[0] == "starting":
        # Before any command ran (click would report a KeyboardInterrupt as "Aborted!").
        _phase[0] = "ending"
        click.echo(f"error: {interrupted_message(exc)}", err=True)
        raise SystemExit(interrupted_code(exc))
    raise exc


_installed: list[int] = []  # the signals whose handler install_signal_handlers() set


def install_signal_handlers() -> None:
    """For the program only (`stackfleet`, `python -m stackfleet`), from the main thread:
    SIGINT, SIGTERM and SIGHUP raise `Interrupted`. A signal left ignored by the parent
    (nohup) stays ignored."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        signal.signal(signum, _on_stop_signal)
        _installed.append(signum)


def _exit_now(code: int) -> None:
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        # A closed pipe or terminal (SIGHUP): nothing more can be said there.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _fail(message: str, code: ExitCode | int, opts: Settings) -> None:
    _phase[0] = "ending"
    _report(message, opts)
    sys.exit(int(code))


def _report(message: str, opts: Settings) -> None:
    if opts.debug:
        import traceback

        traceback.print_exc(file=sys.stderr)
    message = " ".join(message.split())  # one line, whatever the cloud's text held
    if len(message) > MAX_MESSAGE and not opts.debug:
        # e.g. 200 failed VMs each with a reason: the first ones say what went wrong.
        more = len(message) - MAX_MESSAGE
        message = f"{message[:MAX_MESSAGE]}... ({more} more characters with --debug)"
    click.echo(f"error: {message}", err=True)


def _configure_logging(opts: Settings) -> None:
    if opts.debug or opts.verbose:
        level = logging.DEBUG  # asked for: shown even with -q
    else:
        level = logging.ERROR if opts.quiet else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not (opts.debug or opts.verbose > 1):
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    # urllib3 and libcloud log whole request URLs at DEBUG: the API key and signature
    # must not reach a CI log through them (our own logging already leaves them out).
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


class RedactSecrets(logging.Filter):
    PATTERN = re.compile(r"(?i)\b(apikey|signature|secretkey|secret|password)=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.PATTERN.sub(r"\1=<redacted>", text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


def confirm(question: str) -> None:
    """Ask unless --yes; refuse (exit 2) when nobody can answer. A progress display shown
    meanwhile is paused, so the whole question and its [y/N] stay on the screen."""
    from stackfleet.cli.progress import display_paused

    if settings().yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question.rstrip('?')}: refusing without --yes (no terminal to ask)")
    with display_paused():
        answer = click.confirm(question, default=False, err=True)
    if not answer:
        raise BadInput("cancelled: nothing was changed")


def check_cluster_name(name: str) -> str:
    """A --cluster value, checked as the spec's `name` is (it names files and tags)."""
    from stackfleet.spec_schema import NAME_MAX, NAME_PATTERN

    if len(name) > NAME_MAX or not re.fullmatch(NAME_PATTERN, name):
        raise BadInput(
            f"--cluster {name!r}: not a cluster name (2-{NAME_MAX} lower-case letters, "
            "digits and '-', starting with a letter, e.g. demo or ci-1234)"
        )
    return name


def load(spec_path: Path) -> Any:
    from stackfleet.spec import load_spec

    if not spec_path.exists():
        raise BadInput(
            f"{spec_path}: no such spec file; write one with `stackfleet init` or pass -f FILE"
        )
    return load_spec(spec_path)
