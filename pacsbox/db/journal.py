"""The system journal's one writer: who did what to which object, when, from where.

The web page, the CLI and the outbound jobs all write here, so an audit
reads one table whatever started the action. A journal that cannot be
written is logged and never fails the action it records.
"""

from __future__ import annotations

import logging
import time

from pacsbox.db.auth_models import Journal
from pacsbox.db.transaction import write_transaction

log = logging.getLogger("pacsbox.db")


def record(
    action: str,
    user: str,
    address: str = "",
    *,
    target: str = "",
    detail: str = "",
    when: float | None = None,
) -> None:
    try:
        with write_transaction():
            Journal.create(
                time=time.time() if when is None else when,
                user=user[:64],
                address=address[:64],
                action=action[:32],
                target=target[:128],
                detail=detail,
            )
    except Exception as exc:  # noqa: BLE001 - the journal must not break the action
        log.error("cannot write the system journal: %s", exc)
