"""The few SQL building blocks the web page needs that model fields do not offer.

peewee stays under ``pacsbox/db/`` (one owner per library); the web layer
builds its conditions from model fields and these helpers. Patterns use
``!`` as the LIKE escape character so the same SQL runs on SQLite and
PostgreSQL (where a backslash would be the default escape).
"""

from __future__ import annotations

from peewee import SQL, NodeList, fn

TRUE = SQL("1 = 1")


def escape_like(text: str) -> str:
    """Literal text for a LIKE pattern."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def like(col, pattern: str, *, upper: bool = True):
    """``UPPER(col) LIKE pattern ESCAPE '!'`` (pattern already escaped and upper-cased)."""
    lhs = fn.UPPER(col) if upper else col
    return NodeList((lhs, SQL("LIKE"), pattern, SQL("ESCAPE '!'")))


def upper_trim_eq(col, value: str):
    return fn.UPPER(fn.TRIM(col)) == value.strip().upper()


def wildcard(col, value: str, *, upper: bool = False):
    """DICOM wild card matching (PS3.4 C.2.2.2.4): ``*`` any run, ``?`` one character.

    Without a wild card it is an equality, which uses the column's index.
    """
    if upper:
        value = value.upper()
    if "*" not in value and "?" not in value:
        return (fn.UPPER(col) == value) if upper else (col == value)
    pattern = escape_like(value).replace("*", "%").replace("?", "_")
    return like(col, pattern, upper=upper)


def scalar(query) -> object:
    return query.scalar()
