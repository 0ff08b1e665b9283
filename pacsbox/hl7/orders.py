"""HL7 orders (ORM^O01, OMI^O23) carried out on the worklist, through ``db.worklist``.

NW creates the item, or updates it when the order is already there (a RIS
that sends NW again after a timeout must not make two steps); XO updates it,
or creates it when the NW never arrived. CA and DC both end the order: a
step still scheduled is removed (the modality never saw it started, so
nothing refers to it), a step in progress becomes discontinued (its MPPS
and images refer to it), a finished one is left as it is.
"""

from __future__ import annotations

import logging

from pacsbox.db import worklist
from pacsbox.errors import Hl7Rejected, NotFound
from pacsbox.hl7.messages import Order

log = logging.getLogger("pacsbox.hl7")


def apply(order: Order, source: str) -> str:
    """Carry out one order; returns what was done, for MSA-3 and the journal.
    Raises Hl7Rejected (no modality for a new order), NotFound (a cancel of an
    order not in the worklist) and UsageError (a value the worklist refuses)."""
    v = order.values
    found = worklist.find_order(
        placer=v["placer_order"], filler=v["filler_order"], accession=v["accession_number"]
    )
    if order.control in ("CA", "DC"):
        return _end(order, found)
    if not found:
        if not v["modality"]:
            raise Hl7Rejected("OBR-24 (modality) is missing", 101)
        item_id = worklist.add({k: x for k, x in v.items() if x}, source=source)
        return f"order {order.key}: worklist item {item_id} created"
    changes = {k: x for k, x in v.items() if x}
    for item in found:
        worklist.update(item.id, changes)
    return f"order {order.key}: worklist item {', '.join(str(i.id) for i in found)} updated"


def _end(order: Order, found: list[worklist.WorklistItem]) -> str:
    if not found:
        raise NotFound(f"order {order.key} is not in the worklist")
    done = []
    for item in found:
        if item.status == worklist.SCHEDULED:
            worklist.remove(item.id)
            done.append(f"item {item.id} removed")
        elif item.status == worklist.IN_PROGRESS:
            worklist.set_status(item.id, worklist.DISCONTINUED)
            done.append(f"item {item.id} discontinued")
        else:
            done.append(f"item {item.id} already {item.status}")
    return f"order {order.key} ({order.control}): " + ", ".join(done)
