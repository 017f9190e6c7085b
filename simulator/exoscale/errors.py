"""Errors as exoscale answers them: an HTTP status and `{"message": "..."}` (what egoscale and
the official client read)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(kind: str, key: str) -> ApiError:
    return ApiError(404, f"{kind} {key} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, message)
