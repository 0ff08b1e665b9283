"""Parameterised SQL for the index paths that run once per image.

The store path and the status counts skip peewee's query compiler, which
costs more than the statements themselves; the schema (column names
included) is still the peewee models'. Statements are written with ``?``.
"""

from __future__ import annotations

from typing import Any

from pacsbox.db.models import database


def adapt(text: str) -> str:
    """Our SQL is written with ``?``; PostgreSQL's driver wants ``%s``."""
    p = database.obj.param
    return text if p == "?" else text.replace("?", p)


def one(sql: str, params: tuple) -> Any:
    """The first row of a query, or None."""
    return database.execute_sql(adapt(sql), params).fetchone()


def run(sql: str, params: tuple) -> None:
    database.execute_sql(adapt(sql), params)


def insert(table: str, values: dict) -> int:
    """Insert one row; returns its id."""
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    row = one(f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id", tuple(values.values()))
    row_id: int = row[0]
    return row_id


def all_rows(sql: str, params: tuple) -> list:
    rows: list = database.execute_sql(adapt(sql), params).fetchall()
    return rows
