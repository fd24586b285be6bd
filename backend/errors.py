"""The protocol's errors: one table from what can go wrong to what the client reads.

Every error the service sends is `{"error": {"code", "message"}}` with an HTTP
status (docs/protocol.md). Library exceptions become protocol errors here and
nowhere else, whether raised while checking a request or inside a job.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from backend.audio import AudioError
from backend.bundle import BundleError
from backend.contracts import OptionError
from backend.engine import Cancelled

# Starlette's own HTTP errors (routing, methods, body limits) by status.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "bad_audio",
    422: "bad_option",
    503: "busy",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def shutting_down() -> ApiError:
    """What a request gets while the server stops (SIGTERM): nothing of it will be done."""
    return ApiError(
        503, "shutting_down", "the server is shutting down; retry once it is back", headers={"Retry-After": "5"}
    )


def _own(exc) -> ApiError:  # exceptions that carry their own status and code
    return ApiError(exc.status, exc.code, str(exc))


# exception type -> its protocol error (first match wins)
MAPPING = (
    (OptionError, _own),
    (AudioError, _own),
    (Cancelled, lambda exc: ApiError(499, "cancelled", str(exc))),
    (BundleError, lambda exc: ApiError(503, "no_model", str(exc))),  # e.g. listen with no M2S graph
    (
        MemoryError,
        lambda exc: ApiError(503, "busy", "out of memory for this request; try a shorter clip or fewer takes"),
    ),
)


def protocol_error(exc: BaseException) -> ApiError | None:
    """The protocol error for `exc`, or None when it is a bug (answered 500 `internal`)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, make in MAPPING:
        if isinstance(exc, kind):
            return make(exc)
    return None


def checked(fn):
    """`fn()`, its known failures raised as protocol errors."""
    try:
        return fn()
    except Exception as exc:
        err = protocol_error(exc)
        if err is None:
            raise
        raise err from None


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
