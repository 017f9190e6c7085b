"""Typed errors raised deep in the code and turned into one line + an exit code at the CLI edge.

Every module raises one of these (never a bare Exception) so that the CLI can map it to
an ExitCode in one place, and tests can assert on the kind of failure.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    # The cloud refused or failed something, or the cluster did not become ready.
    CLOUD_FAILURE = 1
    # The user gave us something we cannot use: spec, flags, credentials file, names.
    BAD_INPUT = 2
    # Interrupted by the user (Ctrl-C); a re-run picks up where this one stopped.
    INTERRUPTED = 130


class StackfleetError(Exception):
    """Base class: `str(err)` is the one-line message shown to the user."""

    exit_code: ExitCode = ExitCode.CLOUD_FAILURE


class BadInput(StackfleetError):
    """Spec, flag, file or name the user must fix. Exit 2."""

    exit_code = ExitCode.BAD_INPUT


class SpecError(BadInput):
    """A spec failed validation; carries every problem, each with the path of its field."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        first = "; ".join(f"{path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {first}")


class NotFound(BadInput):
    """A zone, template, offering or node the user named does not exist."""


class CredentialsError(BadInput):
    """Credentials are missing, unreadable or refused by the cloud."""


class CloudError(StackfleetError):
    """The cloud answered with an error. `code` is the API's errorcode (HTTP status)."""

    def __init__(self, message: str, code: int | None = None, command: str | None = None) -> None:
        self.code = code
        self.command = command
        super().__init__(message)


class JobFailed(CloudError):
    """An asynchronous job finished with jobstatus 2."""


class WaitTimeout(CloudError):
    """A wait ran past its deadline; the message names what it waited for."""


class Unreachable(CloudError):
    """The endpoint could not be reached at all (connection refused, DNS, TLS)."""


class LimitExceeded(CloudError):
    """The account cannot hold what the spec asks for (VM limit, userdata size)."""


class Conflict(CloudError):
    """Another stackfleet run holds the cluster's lock."""
