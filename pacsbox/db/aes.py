"""The AE table: who may associate, from where, and where their studies go."""

from __future__ import annotations

from pacsbox.db.models import ApplicationEntity
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import NotFound, UsageError


def ae_get(title: str) -> ApplicationEntity | None:
    return ApplicationEntity.get_or_none(ApplicationEntity.title == title)


def ae_list() -> list[ApplicationEntity]:
    return list(ApplicationEntity.select().order_by(ApplicationEntity.title))


def ae_address(title: str) -> tuple[str, str, int]:
    """(title, host, port) of an AE the box can call; raises NotFound (not in the
    table) or UsageError (no host or port)."""
    ae = ae_get(title)
    if ae is None:
        raise NotFound(f"AE {title} is not in the AE table")
    host = ae.hostname or ae.ipaddr
    if not host or not ae.port:
        raise UsageError(f"AE {title} has no host and port in the AE table")
    return ae.title, host, int(ae.port)


def ae_destinations() -> list[str]:
    """AE titles the box can send to: in the table with an address and a port."""
    return [ae.title for ae in ae_list() if ae.port and (ae.hostname or ae.ipaddr)]


def ae_upsert(title: str, **fields: object) -> ApplicationEntity:
    with write_transaction():
        ae = ae_get(title)
        if ae is None:
            return ApplicationEntity.create(title=title, **fields)
        for k, v in fields.items():
            setattr(ae, k, v)
        ae.save()
        return ae


def ae_remove(title: str) -> bool:
    with write_transaction():
        n: int = ApplicationEntity.delete().where(ApplicationEntity.title == title).execute()
        return n > 0
