"""Matrix error responses (client-server API "Standard error response")."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """An error answered to the client as `{"errcode": ..., "error": ...}`."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def missing_param(error: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", error)


def forbidden(error: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def not_found(error: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(
        429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms
    )
