"""Users and groups: the functions behind ``pacsbox user ...`` and root's pages (WEB-2).

Only ``root`` manages accounts (the seed's rule). A generated password is a
one-time password: its owner must choose a new one at first login. A
password given explicitly (``pacsbox user passwd NAME`` typed twice, or a
user changing their own) is not. API tokens (pacsbox.web.tokens) are made
and revoked by root for anyone on the users page, and by each user for
themselves on their password page; a new token is shown once, in the answer
to the form, never in a URL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import bottle

from pacsbox.db.auth_models import Group, Session, User, ensure_schema
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import NotFound, UsageError
from pacsbox.web import privileges as pv
from pacsbox.web import tokens
from pacsbox.web.auth import (
    LoginFailed,
    check_new_password,
    generate_password,
    hash_password,
    set_user_password,
    verify_password,
)
from pacsbox.web.core import Ctx, done, form, wants_json, when

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Clock = Callable[[], float]


def _check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UsageError("a user or group name is 1-64 letters, digits, '.', '_' or '-'")
    return name


def _group(name: str | None) -> Group | None:
    if not name:
        return None
    g = Group.get_or_none(Group.name == name)
    if g is None:
        raise NotFound(f"no group {name}")
    return g


def add_user(
    name: str,
    privileges: list[str] | str,
    password: str | None = None,
    *,
    first_name: str = "",
    last_name: str = "",
    group: str | None = None,
    wado_only: bool = False,
    clock: Clock = time.time,
) -> str:
    """Create a user; returns the password (generated, one-time, when none is given).

    Raises UsageError (bad name, privilege or password, or the user exists).
    """
    ensure_schema()
    _check_name(name)
    if name == pv.ROOT:
        raise UsageError("root exists from the first start; use `pacsbox user passwd root`")
    if name.lower() == pv.ANONYMOUS:
        raise UsageError("anonymous is the journal's name for DICOMweb's anonymous reader")
    try:
        keys = pv.parse(privileges)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    one_time = password is None
    if password is None:
        password = generate_password()
    else:
        check_new_password(password)
    with write_transaction():
        if User.select().where(User.name == name).exists():
            raise UsageError(f"user {name} exists")
        User.create(
            name=name,
            privileges=",".join(keys),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            group=_group(group),
            wado_only=wado_only,
            password_hash=hash_password(password),
            password_changed=clock(),
            must_change=one_time and not wado_only,
            created=clock(),
        )
    return password


def set_password(name: str, password: str | None = None, *, clock: Clock = time.time) -> str:
    """Set (or generate, one-time) a user's password; ends their sessions. Returns it.

    ``root`` is created here when it does not exist yet (first start without
    the daemon). Raises NotFound and UsageError.
    """
    ensure_schema()
    user = User.get_or_none(User.name == name)
    if user is None and name == pv.ROOT:
        with write_transaction():
            user = User.create(name=pv.ROOT, privileges=",".join(pv.KEYS), created=clock())
    if user is None:
        raise NotFound(f"no user {name}")
    one_time = password is None
    if password is None:
        password = generate_password()
    else:
        check_new_password(password)
    set_user_password(user, password, clock, one_time=one_time and not user.wado_only)
    with write_transaction():
        Session.delete().where(Session.user == user.id).execute()
    return password


def update_user(
    name: str,
    *,
    privileges: list[str] | str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    group: str | None = None,
    disabled: bool | None = None,
) -> None:
    ensure_schema()
    user = User.get_or_none(User.name == name)
    if user is None:
        raise NotFound(f"no user {name}")
    with write_transaction():
        if privileges is not None and name != pv.ROOT:
            try:
                user.privileges = ",".join(pv.parse(privileges))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if first_name is not None:
            user.first_name = first_name.strip()[:64]
        if last_name is not None:
            user.last_name = last_name.strip()[:64]
        if group is not None:
            user.group = _group(group)
        if disabled is not None and name != pv.ROOT:
            user.disabled = disabled
        user.save()


def delete_user(name: str) -> None:
    ensure_schema()
    if name == pv.ROOT:
        raise UsageError("root cannot be deleted")
    with write_transaction():
        if User.delete().where(User.name == name).execute() == 0:
            raise NotFound(f"no user {name}")


def list_users() -> list[dict[str, Any]]:
    ensure_schema()
    out = []
    for u in User.select().order_by(User.name):
        out.append(
            {
                "name": u.name,
                "first_name": u.first_name,
                "last_name": u.last_name,
                "group": u.group.name if u.group else "",
                "privileges": pv.KEYS
                if u.name == pv.ROOT
                else [k for k in u.privileges.split(",") if k],
                "wado_only": u.wado_only,
                "disabled": u.disabled,
                "must_change": u.must_change,
                "password_changed": u.password_changed,
            }
        )
    return out


def add_group(name: str, description: str = "") -> None:
    ensure_schema()
    _check_name(name)
    with write_transaction():
        if Group.select().where(Group.name == name).exists():
            raise UsageError(f"group {name} exists")
        Group.create(name=name, description=description.strip()[:255])


def delete_group(name: str) -> None:
    ensure_schema()
    with write_transaction():
        if Group.delete().where(Group.name == name).execute() == 0:
            raise NotFound(f"no group {name}")


def list_groups() -> list[dict[str, Any]]:
    ensure_schema()
    return [
        {"name": g.name, "description": g.description, "members": g.users.count()}
        for g in Group.select().order_by(Group.name)
    ]


# -- the pages --------------------------------------------------------------------------------


def token_rows(name: str, now: float) -> list[dict[str, Any]]:
    """A user's tokens as the pages list them: dates readable, the state in a word."""
    rows = []
    for t in tokens.listing(name):
        state = (
            "revoked" if t["revoked"] else "expired" if t["expires"] and now >= t["expires"]
            else "valid"
        )  # fmt: skip
        rows.append(
            {
                **t,
                "state": state,
                "created_at": when(t["created"]),
                "last_used_at": when(t["last_used"]) if t["last_used"] else "never",
                "expires_at": when(t["expires"]) if t["expires"] else "never",
            }
        )
    return rows


def _days_from_form() -> float:
    text = form("days") or "0"
    try:
        return float(text)
    except ValueError:
        raise UsageError("days: a number (0: until revoked)") from None


def _token_id_from_form() -> int:
    try:
        return int(form("token"))
    except ValueError:
        raise UsageError("token: the number of the token to revoke") from None


def register(ctx: Ctx) -> None:
    def users_page(
        message: str = "", new_password: str = "", new_user: str = "", new_token: str = ""
    ) -> dict[str, Any]:
        now = ctx.clock()
        return {
            "title": "Users",
            "users": [{**u, "tokens": token_rows(u["name"], now)} for u in list_users()],
            "groups": list_groups(),
            "privileges": pv.PRIVILEGES,
            "no_feature_yet": sorted(pv.NO_FEATURE_YET),
            "message": message,
            "new_password": new_password,
            "new_user": new_user,
            "new_token": new_token,
        }

    @ctx.page("/users", template="users.tpl", privilege="root")
    def users(ident):
        return users_page()

    def _privs_from_form() -> list[str]:
        return [k for k in pv.KEYS if bottle.request.forms.get("priv_" + k)]

    @ctx.page("/users", method="POST", template="users.tpl", privilege="root")
    def user_create(ident):
        name = form("name")
        pw = add_user(
            name,
            _privs_from_form(),
            first_name=form("first_name"),
            last_name=form("last_name"),
            group=form("group") or None,
            wado_only=bool(form("wado_only")),
            clock=ctx.clock,
        )
        ctx.journal("user-add", name)
        # The one-time password is shown once, in this response, never in a URL.
        return users_page(f"user {name} created", pw, name)

    @ctx.page("/users/<name>", method="POST", privilege="root")
    def user_update(ident, name):
        update_user(
            name,
            privileges=_privs_from_form(),
            first_name=form("first_name"),
            last_name=form("last_name"),
            group=form("group"),
            disabled=bool(form("disabled")),
        )
        ctx.journal("user-change", name)
        return done("/users", f"user {name} saved")

    @ctx.page("/users/<name>/password", method="POST", template="users.tpl", privilege="root")
    def user_reset(ident, name):
        pw = set_password(name, clock=ctx.clock)
        ctx.journal("user-password-reset", name)
        return users_page(f"new one-time password for {name}", pw, name)

    @ctx.page("/users/<name>/delete", method="POST", privilege="root")
    def user_delete(ident, name):
        delete_user(name)
        ctx.journal("user-delete", name)
        return done("/users", f"user {name} deleted")

    @ctx.page("/users/<name>/tokens", method="POST", template="users.tpl", privilege="root")
    def user_token_create(ident, name):
        label = form("label")
        token = tokens.create(name, label, _days_from_form(), clock=ctx.clock)
        ctx.journal("token-add", name, label)
        return users_page(f"new API token for {name}", new_user=name, new_token=token)

    @ctx.page("/users/<name>/tokens/revoke", method="POST", privilege="root")
    def user_token_revoke(ident, name):
        token_id = _token_id_from_form()
        label = tokens.revoke(name, token_id, clock=ctx.clock)
        ctx.journal("token-revoke", name, label)
        return done("/users", f"API token {label or token_id} of {name} revoked")

    @ctx.page("/groups", method="POST", privilege="root")
    def group_create(ident):
        add_group(form("name"), form("description"))
        ctx.journal("group-add", form("name"), form("description"))
        return done("/users", "group created")

    @ctx.page("/groups/<name>/delete", method="POST", privilege="root")
    def group_delete(ident, name):
        delete_group(name)
        ctx.journal("group-delete", name)
        return done("/users", f"group {name} deleted")

    # -- one's own password (also the page an expired password leads to) --------------------

    def password_page(ident: Any, error: str = "", new_token: str = "") -> dict[str, Any]:
        return {
            "title": "Change password",
            "expired": ident.expired,
            "error": error,
            "tokens": [] if ident.expired else token_rows(ident.principal.name, ctx.clock()),
            "new_token": new_token,
        }

    @ctx.page("/password", template="password.tpl", allow_expired=True)
    def password_form(ident):
        return password_page(ident)

    # One's own API tokens, beside one's password: a tool should not hold the password.
    @ctx.page("/password/tokens", method="POST", template="password.tpl")
    def own_token_create(ident):
        label = form("label")
        token = tokens.create(ident.principal.name, label, _days_from_form(), clock=ctx.clock)
        ctx.journal("token-add", ident.principal.name, label)
        return password_page(ident, new_token=token)

    @ctx.page("/password/tokens/revoke", method="POST")
    def own_token_revoke(ident):
        label = tokens.revoke(ident.principal.name, _token_id_from_form(), clock=ctx.clock)
        ctx.journal("token-revoke", ident.principal.name, label)
        return done("/password", "API token revoked")

    @ctx.page("/password", method="POST", template="password.tpl", allow_expired=True)
    def password_change(ident):
        user = User.get_by_id(ident.user_id)
        old, new, again = form("old"), form("new"), form("again")
        error = ""
        if not verify_password(old, user.password_hash):
            error = "the current password is wrong"
        elif new != again:
            error = "the two new passwords differ"
        elif new == old:
            error = "choose a password different from the current one"
        else:
            try:
                check_new_password(new)
            except UsageError as exc:
                error = str(exc)
        if error:
            if wants_json():
                raise LoginFailed(error) if error.startswith("the current") else UsageError(error)
            bottle.response.status = 400
            return password_page(ident, error)
        set_user_password(user, new, ctx.clock, one_time=False)
        ctx.auth.drop_sessions(user.id, keep=ident.session_id)
        ctx.journal("password-change", user.name)
        return done("/studies", "password changed")
