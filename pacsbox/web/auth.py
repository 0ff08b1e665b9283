"""Logins, server-side sessions, CSRF, idle logout, password expiry, throttling (WEB-1, WEB-3).

Why each choice:
- Sessions live in the database; the cookie holds only a random token and
  the database only its SHA-256, so neither a stolen database nor bottle's
  pickled signed cookies can be replayed. A new token at every login.
- Passwords use scrypt (memory-hard, in the standard library: no native
  dependency on the appliance image) with a per-password salt.
- Every state-changing request (not GET/HEAD) must carry the session's CSRF
  token (form field ``csrf_token`` or header ``X-CSRF-Token``); GET never
  changes state. HTTP Basic and API tokens (``Authorization: Bearer``, see
  pacsbox.web.tokens) need none: a browser never sends them on its own.
- Failed logins are counted per user name and per address; after
  ``MAX_FAILURES`` inside ``THROTTLE_WINDOW`` seconds further attempts are
  refused without checking the password, for the rest of the window.
- Time comes from an injected clock so idle logout and expiry are testable.
- First start: root's one-time password is a short setup code
  (pacsbox.setupcode) that the front panel shows, and root's first session
  may do nothing but choose a password (``/setup``). A first-start password
  is marked by ``password_changed == 0`` (never set by anyone), so a one-time
  password generated later (``pacsbox user passwd root --generate``) is never
  mistaken for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pacsbox import setupcode
from pacsbox.db import journal
from pacsbox.db.auth_models import Session, User
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import AccessDenied, PacsboxError, UsageError
from pacsbox.web import tokens
from pacsbox.web.privileges import KEYS, ROOT, Principal

log = logging.getLogger("pacsbox.web")

COOKIE = "pacsbox_sid"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_FAILURES = 5
THROTTLE_WINDOW = 15 * 60.0
# A tool sending HTTP Basic on every request would pay scrypt (~40 ms) each
# time: a name and password verified once are trusted this long, for as long
# as the user's password hash and state stay the same.
BASIC_TRUST_SECONDS = 300.0
BASIC_TRUST_MAX = 1024
MIN_PASSWORD = 8
LAST_SEEN_GRANULARITY = 5.0  # seconds; fewer writes, idle time still exact enough

# scrypt cost: 2**14 * 8 * 128 bytes = 16 MiB per hash, ~50 ms on a small board.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class Throttled(PacsboxError):
    """Too many failed logins; the message says when to try again."""

    http_status = 429


class LoginFailed(PacsboxError):
    http_status = 401


class SetupDone(PacsboxError):
    """The first-start setup was asked for, but root already has a password."""

    http_status = 409


# -- password hashing -------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_DUMMY_HASH = hash_password(secrets.token_hex(8))  # equal work for unknown users


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a password needs at least {MIN_PASSWORD} characters")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


# -- the logged-in user of one request ---------------------------------------------------


@dataclass
class Identity:
    principal: Principal
    user_id: int  # 0 for the anonymous reader
    session_id: int | None  # None for HTTP Basic, API tokens and the anonymous reader
    csrf: str
    expired: bool  # password expired or one-time: only /password is allowed
    address: str
    setup: bool = False  # root with its first-start password: only /setup is allowed
    via: str = "session"  # "session", "basic", "token <label>", "anonymous": for the journal
    anonymous: bool = False  # DICOMweb's anonymous reader (DicomWebAnonymous)

    @classmethod
    def anonymous_reader(cls, address: str) -> Identity:
        return cls(Principal.anonymous(), 0, None, "", False, address, via="anonymous",
                   anonymous=True)  # fmt: skip


class Auth:
    """Login, session lookup and the journal for one web app."""

    def __init__(
        self,
        idle_minutes: int,
        expiry_days: int,
        clock: Callable[[], float],
        setup_file: Path | None = None,
    ) -> None:
        self.idle = idle_minutes * 60.0
        self.expiry = expiry_days * 86400.0
        self.clock = clock
        self.setup_file = setup_file  # the front panel's copy of the setup code
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        # keyed HMAC of name and password -> (user id, password hash, when verified)
        self._trusted: dict[bytes, tuple[int, str, float]] = {}
        self._trust_key = secrets.token_bytes(32)

    # -- throttling --------------------------------------------------------------

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < THROTTLE_WINDOW]
        self._failures[key] = times
        return times

    def _check_throttle(self, keys: list[str], now: float) -> None:
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= MAX_FAILURES:
                    wait = int(THROTTLE_WINDOW - (now - times[0])) + 1
                    raise Throttled(f"too many failed logins; try again in {wait} s")

    def _fail(self, keys: list[str], now: float) -> None:
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def _succeed(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    # -- checking a password ---------------------------------------------------------

    def check_credentials(self, name: str, password: str, address: str) -> User:
        """The user for a correct name/password; raises Throttled or LoginFailed."""
        now = self.clock()
        keys = ["u:" + name.lower(), "a:" + address]
        self._check_throttle(keys, now)
        user = User.get_or_none(User.name == name)
        ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
        if not ok or user is None or user.disabled or not user.password_hash:
            self._fail(keys, now)
            self.journal("login-failed", name, address, target=name)
            log.warning("web login failed for %s from %s", name, address)
            raise LoginFailed("wrong user name or password")
        self._succeed(keys)
        return user

    def password_expired(self, user: User) -> bool:
        if user.must_change:
            return True
        return bool(self.expiry) and self.clock() - user.password_changed > self.expiry

    # -- sessions ----------------------------------------------------------------------

    def login(self, name: str, password: str, address: str) -> tuple[str, User]:
        """A new session for a correct login: returns (cookie token, user)."""
        if name == ROOT and self.setup_pending():
            password = setupcode.canonical(password) or password  # typed without the dash
        user = self.check_credentials(name, password, address)
        if user.wado_only:
            self.journal("login-failed", name, address, target=name, detail="WADO-only account")
            raise LoginFailed("this account may only be used for WADO")
        token = self._new_session(user, address)
        self.journal("login", name, address)
        log.info("web login %s from %s", name, address)
        return token, user

    def _new_session(self, user: User, address: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with write_transaction():
            Session.create(
                token_hash=tokens.token_hash(token),
                user=user,
                csrf=secrets.token_urlsafe(24),
                created=now,
                last_seen=now,
                address=address,
            )
        return token

    def logout(self, token: str | None, address: str) -> None:
        if not token:
            return
        row = Session.get_or_none(Session.token_hash == tokens.token_hash(token))
        if row is not None:
            name = row.user.name
            with write_transaction():
                row.delete_instance()
            self.journal("logout", name, address)

    def from_session(self, token: str | None, address: str) -> Identity | None:
        """The identity behind a session cookie, or None (unknown, idle-expired or disabled)."""
        if not token:
            return None
        row = Session.get_or_none(Session.token_hash == tokens.token_hash(token))
        if row is None:
            return None
        now = self.clock()
        user = row.user
        if now - row.last_seen > self.idle or user.disabled:
            with write_transaction():
                row.delete_instance()
            self.journal("logout-idle", user.name, address)
            return None
        if now - row.last_seen > LAST_SEEN_GRANULARITY:
            with write_transaction():
                Session.update(last_seen=now).where(Session.id == row.id).execute()
        expired = self.password_expired(user)
        setup = expired and first_start(user)
        return Identity(Principal.of(user), user.id, row.id, row.csrf, expired, address, setup)

    def from_basic(self, header: str | None, address: str) -> Identity | None:
        """HTTP Basic credentials (WADO); raises Throttled/LoginFailed on a wrong password."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            name, _, password = raw.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise LoginFailed("malformed Basic credentials") from None
        user = self._trusted_user(name, password) or self._verify_basic(name, password, address)
        if self.password_expired(user) and not user.wado_only:
            raise LoginFailed("password expired: change it on the web page")
        return Identity(Principal.of(user), user.id, None, "", False, address, via="basic")

    def _credential(self, name: str, password: str) -> bytes:
        return hmac.digest(self._trust_key, f"{name}\0{password}".encode(), "sha256")

    def _trusted_user(self, name: str, password: str) -> User | None:
        """The user of credentials verified lately, if nothing about them changed since."""
        with self._lock:
            hit = self._trusted.get(self._credential(name, password))
        if hit is None or self.clock() - hit[2] > BASIC_TRUST_SECONDS:
            return None
        user = User.get_or_none(User.id == hit[0])
        if user is None or user.disabled or user.name != name or user.password_hash != hit[1]:
            return None
        return user

    def _verify_basic(self, name: str, password: str, address: str) -> User:
        user = self.check_credentials(name, password, address)
        with self._lock:
            if len(self._trusted) >= BASIC_TRUST_MAX:
                self._trusted.clear()
            self._trusted[self._credential(name, password)] = (
                user.id, user.password_hash, self.clock()
            )  # fmt: skip
        return user

    def from_bearer(self, header: str | None, address: str) -> Identity | None:
        """An API token (``Authorization: Bearer``); raises LoginFailed for a bad one."""
        if not header or not header.lower().startswith("bearer "):
            return None
        row, why = tokens.check(header[7:].strip(), self.clock())
        if row is None:
            self.journal("login-failed", "", address, detail=why)
            log.warning("API token refused from %s: %s", address, why)  # never the token
            raise LoginFailed(why)
        user = row.user
        via = f"token {row.label or row.id}"
        return Identity(Principal.of(user), user.id, None, "", False, address, via=via)

    def from_header(self, header: str | None, address: str) -> Identity | None:
        """The Authorization header's user (Basic or Bearer), None without one.

        Raises Throttled or LoginFailed (wrong credentials, an unknown scheme).
        """
        if not header:
            return None
        ident = self.from_basic(header, address) or self.from_bearer(header, address)
        if ident is None:
            raise LoginFailed("send HTTP Basic credentials or an API token (Bearer)")
        return ident

    # -- first start -------------------------------------------------------------------

    def setup_pending(self) -> bool:
        """True while root still has its first-start password (the setup code)."""
        root = User.get_or_none(User.name == ROOT)
        return root is not None and first_start(root)

    def set_up_root(
        self, code: str | None, password: str, again: str, address: str
    ) -> tuple[str, User]:
        """Root chooses its first password; returns a new session (cookie token, root).

        ``code`` is the setup code, checked (and throttled) like a login
        password; None when the caller's session already proved it. Raises
        SetupDone, UsageError (a bad new password), Throttled and LoginFailed.
        """
        if not self.setup_pending():
            raise SetupDone("this box is set up: log in with root's password")
        if password != again:
            raise UsageError("the two passwords differ")
        check_new_password(password)
        if code is None:
            user = User.get(User.name == ROOT)
        else:
            code = setupcode.canonical(code) or code
            if setupcode.canonical(password) == code:
                raise UsageError("choose a password of your own, not the setup code")
            try:
                user = self.check_credentials(ROOT, code, address)
            except LoginFailed:
                raise LoginFailed("wrong setup code") from None
        set_user_password(user, password, self.clock, one_time=False)
        if self.setup_file is not None:
            setupcode.discard(self.setup_file)
        self.drop_sessions(user.id)
        token = self._new_session(user, address)
        self.journal("setup", ROOT, address, detail="root chose its first password")
        log.info("first-start setup done: root chose a password (from %s)", address)
        return token, user

    def drop_sessions(self, user_id: int, keep: int | None = None) -> None:
        with write_transaction():
            q = Session.delete().where(Session.user == user_id)
            if keep is not None:
                q = q.where(Session.id != keep)
            q.execute()

    # -- the journal -----------------------------------------------------------------

    def journal(
        self, action: str, user: str, address: str, *, target: str = "", detail: str = ""
    ) -> None:
        journal.record(action, user, address, target=target, detail=detail, when=self.clock())


def csrf_ok(identity: Identity, supplied: str | None) -> bool:
    return bool(identity.csrf and supplied and hmac.compare_digest(identity.csrf, supplied))


# -- accounts (used by users.py and the first start) ------------------------------------------


def set_user_password(
    user: User, password: str, clock: Callable[[], float], *, one_time: bool
) -> None:
    with write_transaction():
        user.password_hash = hash_password(password)
        user.password_changed = clock()
        user.must_change = one_time
        user.failed_logins = 0
        user.save()


def first_start(user: User) -> bool:
    """Root with the password made at first start, which no person has chosen or reset yet."""
    return user.name == ROOT and user.must_change and user.password_changed == 0.0


def ensure_root(
    clock: Callable[[], float], code_file: Path | None = None, *, announce: bool = True
) -> str | None:
    """Give root a setup code on first start (or when its copy was lost); returns it, else None.

    There is no default password: root's first password is a setup code,
    kept in ``code_file`` for the front panel and printed once to standard
    error (the console of ``make run``, the journal under systemd; never
    through the log, which may be a file). At later starts the file is
    checked: removed once root has a password, made again with a new code
    when root still has none but the file is gone or does not match.
    """
    root = User.get_or_none(User.name == ROOT)
    if root is not None and not first_start(root):
        if code_file is not None and setupcode.discard(code_file):
            log.info("removed the stale setup code file %s: root has a password", code_file)
        return None
    if root is not None and code_file is not None:
        try:
            kept = setupcode.read(code_file)
        except OSError:
            kept = None
        if kept and verify_password(kept, root.password_hash):
            log.info(
                "root has no password yet: the setup code is on the front panel "
                "(or run `pacsbox user passwd root`)"
            )
            return None
    code = setupcode.generate()
    if code_file is not None:
        setupcode.write(code_file, code)  # before the row, so a shown code always works
    with write_transaction():
        root = User.get_or_none(User.name == ROOT)
        if root is not None and not first_start(root):
            return None  # set meanwhile by `pacsbox user passwd root`
        if root is None:
            root = User(name=ROOT, privileges=",".join(KEYS), created=clock())
        root.password_hash = hash_password(code)
        root.password_changed = 0.0  # first_start(): no person has chosen it
        root.must_change = True
        root.save()
    if announce:
        print(
            f"pacsbox: first start: web user root has the one-time password {code} (the setup "
            "code the front panel shows until root chooses a password on the web page, "
            "or with `pacsbox user passwd root`)",
            file=sys.stderr,
            flush=True,
        )
    log.info("root has no password yet: made a setup code, shown on the front panel")
    return code


def require_root(p: Principal) -> None:
    if not p.is_root:
        raise AccessDenied("only root manages users and groups")
