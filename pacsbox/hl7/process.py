"""One HL7 message in, one ACK out: decode, check the sender, carry it out, journal it.

Every failure becomes an ACK (AR for a message refused as a whole, AE for one
that could not be carried out) and a journal line with the control ID, the
type and the outcome, so the RIS and the box's audit see the same story. The
log line names the sender and control ID, never the patient.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

import hl7

from pacsbox.config import Config
from pacsbox.db import journal
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import Hl7Rejected, PacsboxError
from pacsbox.hl7 import ack, messages, orders, patients
from pacsbox.hl7.messages import CHARSETS

log = logging.getLogger("pacsbox.hl7")

ORDER_TYPES = ("ORM^O01", "OMI^O23")
UPDATE_TYPES = ("ADT^A01", "ADT^A04", "ADT^A08")
MERGE_TYPES = ("ADT^A40",)


@dataclass
class Answer:
    """The ACK to send, already encoded in the message's own character set."""

    data: bytes
    code: str


class Processor:
    """Carries out messages for one configuration (the listener calls ``handle``)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.application = cfg.ApplicationEntityTitle
        self.allowed = {s.strip() for s in cfg.HL7AllowedSenders.split(",") if s.strip()}
        self.stations = messages.station_map(cfg.HL7StationMap)

    def handle(self, raw: bytes, address: str) -> Answer:
        """The ACK for ``raw`` (one MLLP block) from ``address``; never raises."""
        msg: hl7.Message | None = None
        head = messages.Header("", "", "", "", self.cfg.HL7Charset)
        journaled = False
        try:
            text, charset = messages.decode(raw, self.cfg.HL7Charset)
            msg = messages.parse(text)
            head = messages.header(msg, charset)
            self._check_sender(head, address)
            # An order and its journal line commit together: one durable write per ACK.
            # ADT edits rewrite files and take their own transactions.
            with write_transaction() if head.kind in ORDER_TYPES else nullcontext():
                reason = self._carry_out(msg, head, address)
                self._journal(head, address, "AA", reason)
            code, error, journaled = "AA", 0, True
        except PacsboxError as exc:
            code, reason, error = exc.hl7_ack, str(exc), exc.hl7_error
            if msg is None:  # a charset refused: read MSH alone to answer its control ID
                msg, head = _salvage(raw, head)
        except Exception as exc:  # noqa: BLE001 - a message must never stop the listener
            log.error("HL7 %s %s: %s: %s", head.kind, head.control_id, type(exc).__name__, exc)
            code, reason, error = "AE", f"internal error: {type(exc).__name__}", 207
        if not journaled:
            self._journal(head, address, code, reason)
        log.info(
            "HL7 %s control ID %s from %s (%s): %s%s",
            head.kind or "message",
            head.control_id or "-",
            head.sender or "?",
            address,
            code,
            f" ({reason})" if code == "AR" else "",  # AR reasons name fields, never patients
        )
        try:
            text = ack.build(msg, code, reason, error, self.application)
        except Exception as exc:  # noqa: BLE001 - an MSH the library cannot answer
            log.warning("HL7 %s: ACK without its header (%s)", head.control_id or "-", exc)
            text = ack.build(None, code, reason, error, self.application)
        codec = CHARSETS.get(head.charset.upper(), "utf-8")
        return Answer(text.encode(codec, "replace"), code)

    def _journal(self, head: messages.Header, address: str, code: str, reason: str) -> None:
        who = f"hl7:{head.sender}" if head.sender else "hl7"
        journal.record(
            "hl7 " + (head.kind or "message"), who, address,
            target=head.control_id, detail=f"{code}: {reason}",
        )  # fmt: skip

    def _check_sender(self, head: messages.Header, address: str) -> None:
        if self.allowed and not {address, head.sender} & self.allowed:
            raise Hl7Rejected(f"sender {head.sender or '?'} at {address} is not allowed", 207)

    def _carry_out(self, msg: hl7.Message, head: messages.Header, address: str) -> str:
        source = f"hl7:{head.sender}"[:80]
        if head.kind in ORDER_TYPES:
            return "; ".join(
                orders.apply(order, source) for order in messages.orders(msg, self.stations)
            )
        if head.kind in UPDATE_TYPES:
            who = messages.patient(msg)
            changes = messages.demographics(msg)
            return patients.update(who["patient_id"], who["issuer"], changes, source, address)
        if head.kind in MERGE_TYPES:
            who = messages.patient(msg)
            old_id, old_issuer = messages.merged_id(msg)
            values = messages.demographics(msg)
            return patients.merge(
                who["patient_id"], who["issuer"], old_id, old_issuer, values, source, address
            )
        if not head.kind.startswith(("ORM", "OMI", "ADT")):
            raise Hl7Rejected(f"message type {head.kind or '(none)'} is not handled", 200)
        raise Hl7Rejected(f"event {head.kind} is not handled", 201)


def _salvage(raw: bytes, head: messages.Header) -> tuple[hl7.Message | None, messages.Header]:
    """The message parsed as Latin-1 (which reads any bytes), for the ACK's header only."""
    try:
        messages.delimiters(raw)
        msg = messages.parse(raw.decode("latin-1"))
        salvaged = messages.header(msg, head.charset)
    except PacsboxError:
        return None, head
    return msg, salvaged
