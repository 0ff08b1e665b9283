"""SQL pieces of the web page's access rules that model fields do not offer.

The private-study rules (``web/privileges.py``) compare a user's name with a
physician's person name value (one of several, any further components) and
a group description with the institution name, without regard to case; they
are access rules, not DICOM matching, which is ``db/match.py``'s alone.
peewee stays under ``pacsbox/db/`` (one owner per library). Patterns use
``!`` as the LIKE escape character so the same SQL runs on SQLite and
PostgreSQL (where a backslash would be the default escape).
"""

from __future__ import annotations

from peewee import SQL, ColumnBase, Expression, NodeList, fn

# A SQL condition, for the annotations of the modules that build access rules
# from these pieces (peewee stays under pacsbox/db/).
SqlCondition = ColumnBase

TRUE = SQL("1 = 1")


def escape_like(text: str) -> str:
    """Literal text for a LIKE pattern."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def like(col: ColumnBase, pattern: str, *, upper: bool = True) -> NodeList:
    """``UPPER(col) LIKE pattern ESCAPE '!'`` (pattern already escaped and upper-cased)."""
    lhs = fn.UPPER(col) if upper else col
    return NodeList((lhs, SQL("LIKE"), pattern, SQL("ESCAPE '!'")))


def upper_trim_eq(col: ColumnBase, value: str) -> Expression:
    return fn.UPPER(fn.TRIM(col)) == value.strip().upper()
