"""Users, groups, web sessions and the system journal (WEB-2, WEB-3).

Kept apart from the image index models because only the web page and the
``pacsbox user`` commands use them. Times are Unix seconds (floats) so the
web layer can run on an injected clock in tests. Sessions store a hash of
the cookie value, never the value itself: a copied database cannot be used
to log in.

Importing this module registers migrations 10 and 25 (API tokens);
``ensure_schema`` applies them on a database opened before the import.
"""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    Database,
    FloatField,
    ForeignKeyField,
    IntegerField,
    ModelSelect,
    TextField,
)

from pacsbox.db.migrations import MIGRATIONS, migrate, register
from pacsbox.db.models import BaseModel, SchemaVersion, database


class Group(BaseModel):
    """A user group; its description is matched against (0008,0080) Institution Name."""

    id: AutoField[int]  # implicit fields declared for the type checker (see BaseModel)
    users: ModelSelect[User]  # backref of User.group
    name = CharField(max_length=64, unique=True)
    description = CharField(max_length=255, default="")


class User(BaseModel):
    id: AutoField[int]
    sessions: ModelSelect[Session]  # backref of Session.user
    api_tokens: ModelSelect[ApiToken]  # backref of ApiToken.user
    name = CharField(max_length=64, unique=True)
    first_name = CharField(max_length=64, default="")
    last_name = CharField(max_length=64, default="")
    email = CharField(max_length=255, default="")
    group = ForeignKeyField(Group, null=True, backref="users", on_delete="SET NULL")
    group_id: ForeignKeyField[int | None]
    # Comma-separated privilege keys (see pacsbox.web.privileges.PRIVILEGES).
    privileges = TextField(default="")
    password_hash = TextField(default="")
    password_changed = FloatField(default=0.0)
    must_change = BooleanField(default=False)  # a generated one-time password
    wado_only = BooleanField(default=False)  # the dedicated WADO account
    disabled = BooleanField(default=False)
    failed_logins = IntegerField(default=0)
    locked_until = FloatField(default=0.0)
    created = FloatField(default=0.0)


class Session(BaseModel):
    id: AutoField[int]
    token_hash = CharField(max_length=64, unique=True)  # sha256 hex of the cookie value
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE", index=True)
    user_id: ForeignKeyField[int]
    csrf = CharField(max_length=64)
    created = FloatField()
    last_seen = FloatField()
    address = CharField(max_length=64, default="")


class ApiToken(BaseModel):
    """A user's credential for tools (``Authorization: Bearer``); only its hash is kept."""

    id: AutoField[int]
    token_hash = CharField(max_length=64, unique=True)  # sha256 hex of the token
    user = ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE", index=True)
    user_id: ForeignKeyField[int]
    label = CharField(max_length=64, default="")
    created = FloatField()
    last_used = FloatField(default=0.0)  # 0: never
    expires = FloatField(default=0.0)  # 0: never
    revoked = FloatField(default=0.0)  # when it was revoked; 0: valid


class Journal(BaseModel):
    """The system journal (audit log): who did what to which object, when, from where."""

    id: AutoField[int]
    time = FloatField(index=True)
    user = CharField(max_length=64, default="")
    address = CharField(max_length=64, default="")
    action = CharField(max_length=32, index=True)
    target = CharField(max_length=128, default="")
    detail = TextField(default="")


AUTH_MODELS = [Group, User, Session, Journal]
TOKEN_MODELS = [ApiToken]


def _m0010_users(db: Database) -> None:
    db.create_tables(AUTH_MODELS, safe=True)


def _m0025_api_tokens(db: Database) -> None:
    # Per-user API tokens for DICOMweb and WADO tools (issue 19): a new table, as 14.
    db.create_tables(TOKEN_MODELS, safe=True)


if not any(n == 10 for n, _, _ in MIGRATIONS):
    register(10, "web users, groups, sessions and the system journal", _m0010_users)
if not any(n == 25 for n, _, _ in MIGRATIONS):
    register(25, "per-user API tokens", _m0025_api_tokens)


def ensure_schema() -> None:
    """Apply migration 10 (and anything else pending) on the open database.

    Also covers a database migrated past 10 by a process that never imported
    this module (so 10 was not registered then): the tables are created and
    10 recorded, instead of being skipped as "already applied".
    """
    db = database.obj
    migrate(db)
    if not all(db.table_exists(m._meta.table_name) for m in AUTH_MODELS):
        with db.atomic():
            _m0010_users(db)
            SchemaVersion.insert(
                version=10, name="web users, groups, sessions and the system journal"
            ).on_conflict_ignore().execute()
