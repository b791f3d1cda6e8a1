"""The one error type the gateway answers with: a status code and a message, sent as `{"error": message}`."""

from __future__ import annotations


class GatewayError(Exception):
    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After with a 429
