"""Per-user API tokens for tools (``Authorization: Bearer``), behind the users page and the CLI.

An AI tool or a gateway should not hold a person's password, and its access
should end without changing that password: a token is its own credential,
revoked on its own. Tokens are 256-bit random values; only their SHA-256 is
stored (a copied database logs nobody in), so a token is shown once, when
it is made. A token acts as its user, with the user's privileges; it does
not follow the password's expiry (a gateway would stop every 60 days), it
has its own optional expiry, and it stops working when the user is
disabled or deleted.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from pacsbox.db.auth_models import ApiToken, User, ensure_schema
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import NotFound, UsageError

PREFIX = "pbx_"  # makes a leaked token recognisable (secret scanners, logs)
LAST_USED_GRANULARITY = 60.0  # seconds: one write a minute per busy token, not per request
MAX_LABEL = 64
MAX_DAYS = 3650
Clock = Callable[[], float]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(name: str) -> User:
    user = User.get_or_none(User.name == name)
    if user is None:
        raise NotFound(f"no user {name}")
    return user


def create(name: str, label: str = "", days: float = 0, *, clock: Clock = time.time) -> str:
    """A new token for user ``name``, valid ``days`` (0: until revoked); returns its value.

    Raises NotFound (no such user) and UsageError (a bad label or number of days).
    """
    ensure_schema()
    label = label.strip()
    if len(label) > MAX_LABEL or any(ord(c) < 32 for c in label):
        raise UsageError(f"a token label is at most {MAX_LABEL} printable characters")
    if not 0 <= days <= MAX_DAYS:
        raise UsageError(f"a token is valid 0 (until revoked) to {MAX_DAYS} days")
    user = _user(name)
    token = PREFIX + secrets.token_urlsafe(32)
    now = clock()
    with write_transaction():
        ApiToken.create(
            token_hash=token_hash(token),
            user=user,
            label=label,
            created=now,
            expires=now + days * 86400 if days else 0.0,
        )
    return token


def listing(name: str) -> list[dict[str, Any]]:
    """The tokens of user ``name``, newest first, without their values (which are not kept)."""
    ensure_schema()
    user = _user(name)
    rows = ApiToken.select().where(ApiToken.user == user.id).order_by(ApiToken.id.desc())
    return [
        {
            "id": t.id,
            "label": t.label,
            "created": t.created,
            "last_used": t.last_used,
            "expires": t.expires,
            "revoked": t.revoked,
        }
        for t in rows
    ]


def revoke(name: str, token_id: int, *, clock: Clock = time.time) -> str:
    """Revoke one token of user ``name``; returns its label. Raises NotFound."""
    ensure_schema()
    user = _user(name)
    row = ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.user == user.id))
    if row is None:
        raise NotFound(f"{name} has no token {token_id}")
    if not row.revoked:
        with write_transaction():
            ApiToken.update(revoked=clock()).where(ApiToken.id == row.id).execute()
    label: str = row.label
    return label


def check(token: str, now: float) -> tuple[ApiToken | None, str]:
    """(the valid token row, "") or (None, why it is refused: one line, no token in it)."""
    row = ApiToken.get_or_none(ApiToken.token_hash == token_hash(token))
    if row is None:
        return None, "unknown API token"
    if row.revoked:
        return None, "this API token was revoked"
    if row.expires and now >= row.expires:
        return None, "this API token has expired"
    if row.user.disabled:
        return None, "the account of this API token is disabled"
    if now - row.last_used > LAST_USED_GRANULARITY:
        with write_transaction():
            ApiToken.update(last_used=now).where(ApiToken.id == row.id).execute()
    return row, ""
