"""CloudStack's error answers: an HTTP status that equals `errorcode`, plus a `cserrorcode`.

The codes are those of CloudStack's ApiErrorCode and CSExceptionErrorCode, so a client's
error handling sees here what it would see on a real cloud.
"""

from __future__ import annotations

from typing import Any

# cserrorcode values (com.cloud.utils.exception.CSExceptionErrorCode).
CS_SERVER_API = 9999
CS_CLOUD_RUNTIME = 4250
CS_INSUFFICIENT_ADDRESS = 4320
CS_INSUFFICIENT_SERVER = 4335
CS_INVALID_PARAMETER = 4350
CS_RESOURCE_ALLOCATION = 4370
CS_RESOURCE_IN_USE = 4375

# errorcode values (org.apache.cloudstack.api.ApiErrorCode).
UNAUTHORIZED = 401
PARAM_ERROR = 431
UNSUPPORTED_ACTION = 432
INTERNAL_ERROR = 530
INSUFFICIENT_CAPACITY = 533
RESOURCE_ALLOCATION = 535
RATE_LIMITED = 429

AUTH_TEXT = "unable to verify user credentials and/or request signature"


class ApiError(Exception):
    """An error CloudStack would answer with; `cserrorcode` None means CloudStack omits it."""

    def __init__(self, code: int, text: str, cserrorcode: int | None = CS_SERVER_API) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.cserrorcode = cserrorcode

    def body(self, command: str) -> dict[str, Any]:
        inner: dict[str, Any] = {"uuidList": [], "errorcode": self.code}
        if self.cserrorcode is not None:
            inner["cserrorcode"] = self.cserrorcode
        inner["errortext"] = self.text
        return {f"{command.lower()}response": inner}

    def job_result(self) -> dict[str, Any]:
        return {"errorcode": self.code, "errortext": self.text}


def auth_error() -> ApiError:
    # ApiServlet answers a bad signature, an unknown key and an unknown command alike.
    return ApiError(UNAUTHORIZED, AUTH_TEXT, None)


def missing_param(command: str, name: str) -> ApiError:
    return ApiError(
        PARAM_ERROR,
        f"Unable to execute API command {command.lower()} due to missing parameter {name}",
        CS_SERVER_API,
    )


def bad_value(command: str, name: str, value: str) -> ApiError:
    return ApiError(
        PARAM_ERROR,
        f"Unable to execute API command {command.lower()} due to invalid value. "
        f"Invalid parameter {name} value={value} due to incorrect long value format, "
        "or entity does not exist or due to incorrect parameter annotation for the field "
        "in api cmd class.",
        CS_SERVER_API,
    )


def unknown_id(name: str, value: str) -> ApiError:
    return ApiError(
        PARAM_ERROR,
        f"Invalid parameter {name} value={value} due to incorrect long value format, "
        "or entity does not exist or due to incorrect parameter annotation for the field "
        "in api cmd class.",
        CS_INVALID_PARAMETER,
    )


def invalid(text: str) -> ApiError:
    """InvalidParameterValueException."""
    return ApiError(PARAM_ERROR, text, CS_INVALID_PARAMETER)


def rate_limited(retry_ms: int) -> ApiError:
    return ApiError(
        RATE_LIMITED,
        f"The given user has reached his/her account api limit, please retry after {retry_ms} ms.",
        CS_SERVER_API,
    )
