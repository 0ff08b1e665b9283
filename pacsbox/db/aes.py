"""The AE table: who may associate, from where, and where their studies go."""

from __future__ import annotations

from pacsbox.db.commit import write_transaction
from pacsbox.db.models import ApplicationEntity


def ae_get(title: str) -> ApplicationEntity | None:
    return ApplicationEntity.get_or_none(ApplicationEntity.title == title)


def ae_list() -> list[ApplicationEntity]:
    return list(ApplicationEntity.select().order_by(ApplicationEntity.title))


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
