"""The one error tree of orca-relay. Every error knows its HTTP status, OpenAI `type` and
stable `code`, and renders as OpenAI's error body so the official SDKs raise their usual
exception classes with our `code` set.

    RelayError
    ├── ClientError                 the caller's fault (4xx)
    │   ├── InvalidRequest          400 invalid_request_error (invalid_json, invalid_utf8, …)
    │   ├── RequestTooLarge         413 request_too_large
    │   ├── AuthenticationFailed    401 invalid_api_key
    │   ├── QuotaExceeded           429 quota_exceeded
    │   ├── GuardrailBlocked        400 guardrail_blocked
    │   ├── FirewallBlocked         400 firewall_blocked
    │   ├── NotFound                404 not_found / route_not_found
    │   ├── MethodNotAllowed        405 method_not_allowed
    │   ├── Unauthenticated         401 unauthenticated / invalid_credentials (admin API)
    │   ├── PermissionDenied        403 admin_required / csrf_failed (admin API)
    │   ├── PaymentRequired         402 paid_plan_required (admin API)
    │   ├── StateConflict           409 (a precise code per case, e.g. key_revoked)
    │   └── TooManyAttempts         429 too_many_attempts (admin login)
    ├── UpstreamError               the provider's fault
    │   ├── UpstreamUnreachable     502 upstream_unreachable
    │   ├── UpstreamBadResponse     502 upstream_bad_response
    │   ├── UpstreamInterrupted     502 upstream_stream_interrupted (mid-stream)
    │   └── UpstreamTimeout         504 upstream_timeout
    └── InternalError               500 internal_error (a bug of ours; fails closed)
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class RelayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance refinement of the class code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class ClientError(RelayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(ClientError):
    pass


class RequestTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class QuotaExceeded(ClientError):
    status = 429
    type = "insufficient_quota"
    code = "quota_exceeded"


class GuardrailBlocked(ClientError):
    code = "guardrail_blocked"


class FirewallBlocked(ClientError):
    code = "firewall_blocked"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class Unauthenticated(ClientError):
    status = 401
    type = "authentication_error"
    code = "unauthenticated"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"
    code = "admin_required"


class PaymentRequired(ClientError):
    status = 402
    type = "permission_error"
    code = "paid_plan_required"


class StateConflict(ClientError):
    status = 409
    code = "conflict"


class TooManyAttempts(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "too_many_attempts"


class UpstreamError(RelayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"


class UpstreamInterrupted(UpstreamError):
    code = "upstream_stream_interrupted"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class InternalError(RelayError):
    pass
