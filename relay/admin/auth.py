"""Console sessions: login, logout, who is calling, and the CSRF rule.

- A session token is `orca_sess_` + 256 random bits; the store keeps only its SHA-256.
  It travels as the `orca_session` cookie (HttpOnly, SameSite=Strict) or as
  `Authorization: Bearer`. A relay key (`sk-orca-…`) is never a session.
- Sessions end at an absolute expiry, after an idle timeout, or at logout. Last-seen is
  written at most once a minute per session, so reads do not turn into writes.
- Failed logins are counted in the store (so every worker and replica shares them):
  10 per account and 50 per address in 15 minutes, then 429 too_many_attempts until
  the window has passed, even with the right password. Successes are not counted.
- Cookie-authenticated state changes need an `Origin` that is the admin listener's own
  or one of ORCA_CONSOLE_ORIGINS (403 csrf_failed); bearer tokens cannot be sent by a
  browser on its own, so they need none.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from relay.accounts import verify_password
from relay.errors import PermissionDenied, TooManyAttempts, Unauthenticated
from relay.store.base import (
    AuditDraft,
    SessionRecord,
    Store,
    User,
    new_id,
    rfc3339,
    utc_now,
)

COOKIE = "orca_session"
TOKEN_PREFIX = "orca_sess_"
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 10
MAX_FAILURES_PER_ADDRESS = 50
TOUCH_EVERY = timedelta(minutes=1)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Verifying against this costs what a real check costs, so a login for an unknown email
# answers in the same time as one with a wrong password.
_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Authenticated:
    user: User
    session: SessionRecord
    via_cookie: bool


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: SessionRecord
    user: User


class Sessions:
    def __init__(self, store: Store, ttl_seconds: float, idle_seconds: float) -> None:
        self._store = store
        self._ttl = timedelta(seconds=ttl_seconds)
        self._idle = timedelta(seconds=idle_seconds)

    async def login(self, email: str, password: str, address: str) -> LoginResult:
        email = email.strip().lower()
        now = utc_now()
        since = rfc3339(now - LOGIN_WINDOW)
        by_account, by_address = await self._store.count_login_failures(email, address, since)
        if by_account >= MAX_FAILURES_PER_ACCOUNT or by_address >= MAX_FAILURES_PER_ADDRESS:
            raise TooManyAttempts("too many failed logins; try again in 15 minutes")
        found = await self._store.get_user_by_email(email)
        stored_hash = found[1] if found is not None else _DUMMY_HASH
        ok = await asyncio.get_running_loop().run_in_executor(
            None, verify_password, password, stored_hash)
        if found is None or not ok:
            await self._store.add_login_failure(email, address, rfc3339(now))
            raise Unauthenticated("wrong email or password", code="invalid_credentials")
        user = found[0]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = SessionRecord(new_id("ses"), user.id, token_hash(token), rfc3339(now),
                               rfc3339(now + self._ttl), rfc3339(now))
        await self._store.create_session(record)
        for workspace_id, _role in await self._store.memberships(user.id):
            await self._store.append_audit(AuditDraft(
                workspace_id, f"user:{user.id}", "session.login", record.id,
                after=None))
        return LoginResult(token, record, user)

    async def authenticate(self, request: web.Request) -> Authenticated:
        """The caller's session, or 401. A relay key here is a bad session."""
        token, via_cookie = _presented_token(request)
        if token is None:
            raise Unauthenticated("log in first: no session cookie or bearer token")
        if not token.startswith(TOKEN_PREFIX):
            raise Unauthenticated("this is not a console session token (relay keys are "
                                  "for /v1 only)")
        session = await self._store.get_session(token_hash(token))
        now = utc_now()
        if (session is None or session.revoked_at is not None
                or session.expires_at <= rfc3339(now)
                or session.last_seen_at <= rfc3339(now - self._idle)):
            raise Unauthenticated("the session has ended; log in again")
        user = await self._store.get_user(session.user_id)
        if user is None:
            raise Unauthenticated("the session's user no longer exists")
        if session.last_seen_at <= rfc3339(now - TOUCH_EVERY):
            await self._store.touch_session(session.id, rfc3339(now))
        return Authenticated(user, session, via_cookie)

    async def logout(self, session: SessionRecord) -> None:
        await self._store.revoke_session(session.id, rfc3339(utc_now()))


def _presented_token(request: web.Request) -> tuple[str | None, bool]:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        return (value.strip() or None) if scheme.lower() == "bearer" else None, False
    cookie = request.cookies.get(COOKIE)
    return (cookie or None), True


def check_csrf(request: web.Request, via_cookie: bool, allowed: tuple[str, ...]) -> None:
    """Cookie-authenticated state changes must come from the console's own origin."""
    if not via_cookie or request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    if origin is None or (origin != own and origin not in allowed):
        raise PermissionDenied(
            "cross-site request refused: a cookie-authenticated change needs the "
            "console's Origin header", code="csrf_failed")


def set_session_cookie(response: web.StreamResponse, request: web.Request,
                       result: LoginResult, ttl_seconds: float) -> None:
    response.set_cookie(COOKIE, result.token, httponly=True, samesite="Strict", path="/api",
                        secure=request.secure, max_age=int(ttl_seconds))
