"""Study status back to the RIS (INT-1): an ORM^O01 status change when an order's images arrive.

A thread of the daemon looks at the studies indexed since its cursor; a
study whose Study Instance UID (or accession number) is that of an HL7
order's worklist item is announced to HL7StatusDestination as ORC-1 SC,
ORC-5 IP with the order's numbers. The cursor (a file in the data folder)
moves past a study only once the RIS answered, so a RIS that is down gets
the message when it is back, after a restart too. Turned on, it starts
at the newest study: studies stored before are not announced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
from pathlib import Path

import hl7
from hl7.mllp import open_hl7_connection
from hl7.util import generate_message_control_id

from pacsbox.config import Config
from pacsbox.db import journal, worklist
from pacsbox.db.models import Study
from pacsbox.errors import PeerError

log = logging.getLogger("pacsbox.hl7")

TURN_SECONDS = 2.0
MAX_BACKOFF = 60.0
TIMEOUT = 10.0  # seconds for the connection and for each ACK
BATCH = 100


class StatusSender:
    """Announces arriving studies of HL7 orders until ``stop``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        host, _, port = cfg.HL7StatusDestination.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.cursor_path = Path(cfg.DataDirectory) / "hl7-status.cursor"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl7-status", daemon=True)

    def start(self) -> None:
        """Start the thread; the first start fixes the cursor at the newest study now."""
        self._cursor()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT + 5)

    def _run(self) -> None:
        wait = TURN_SECONDS
        while not self._stop.wait(wait):
            try:
                self.turn()
                wait = TURN_SECONDS
            except Exception as exc:  # noqa: BLE001 - a RIS down or a busy index: try again
                wait = min(wait * 2, MAX_BACKOFF)
                log.warning("HL7 status to %s: %s; again in %.0f s", self.destination, exc, wait)

    @property
    def destination(self) -> str:
        return f"{self.host}:{self.port}"

    def turn(self) -> int:
        """Announce what arrived since the cursor; returns how many messages went. A RIS
        that refuses one (AE/AR) is journaled and not asked again. Raises PeerError,
        OSError and TimeoutError (no answer): the cursor stays before that study."""
        cursor = self._cursor()
        studies = list(Study.select().where(Study.id > cursor).order_by(Study.id).limit(BATCH))
        sent = 0
        for study in studies:
            for item in _orders_of(study):
                code = self._send(message(item, self.cfg.ApplicationEntityTitle))
                order = item.placer_order or item.accession_number
                journal.record(
                    "hl7 status", "pacsbox", self.destination, target=study.study_instance_uid,
                    detail=f"ORM^O01 SC for order {order}: {code}",
                )  # fmt: skip
                if code not in ("AA", "CA"):  # refused, not lost: sending again changes nothing
                    log.warning("HL7 status for order %s: %s answered %s", order,
                                self.destination, code)  # fmt: skip
                sent += 1
            self._save(study.id)
        return sent

    def _send(self, text: str) -> str:
        """The ACK's MSA-1; raises PeerError for an answer without one (sent again later)."""
        code = asyncio.run(_exchange(self.host, self.port, text))
        if not code:
            raise PeerError("the RIS answered without an MSA-1")
        return code

    def _cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            newest = Study.select(Study.id).order_by(Study.id.desc()).first()
            start = newest.id if newest is not None else 0
            self._save(start)
            return start
        except ValueError:
            return 0

    def _save(self, study_id: int) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(f"{study_id}\n")
        os.replace(tmp, self.cursor_path)


def _orders_of(study: Study) -> list[worklist.WorklistItem]:
    found = worklist.find_order(study_uid=study.study_instance_uid)
    if not found and study.accession_number:
        found = worklist.find_order(accession=study.accession_number)
    return [i for i in found if i.source.startswith("hl7:")]


async def _exchange(host: str, port: int, text: str) -> str:
    """Send one message, return the ACK's MSA-1."""
    reader, writer = await asyncio.wait_for(
        open_hl7_connection(host, port, encoding="utf-8"), TIMEOUT
    )
    try:
        writer.writemessage(hl7.parse(text))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), TIMEOUT)
    finally:
        writer.close()
    try:
        return str(ack.extract_field("MSA", 1, 1, 1, 1)).strip()
    except (KeyError, IndexError):
        return ""


def message(item: worklist.WorklistItem, application: str) -> str:
    """The ORM^O01 status change (ORC-1 SC, ORC-5 IP) for one worklist item."""
    esc = hl7.parse("MSH|^~\\&|").escape

    def pn(name: str) -> str:  # DICOM PN (family^given^middle^prefix^suffix) as an XPN
        parts = (name.split("=")[0].split("^") + [""] * 5)[:5]
        family, given, middle, prefix, suffix = (esc(p) for p in parts)
        return "^".join((family, given, middle, suffix, prefix)).rstrip("^")

    receiver = item.source.removeprefix("hl7:")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    placer, filler = esc(item.placer_order), esc(item.filler_order)
    obr = ["OBR", "1", placer, filler, "^" + esc(item.requested_procedure_description),
           *[""] * 13, esc(item.accession_number), esc(item.requested_procedure_id),
           esc(item.sps_id), "", "", "", esc(item.modality)]  # fmt: skip
    return "\r".join([
        f"MSH|^~\\&|{esc(application)}||{esc(receiver)}||{stamp}||ORM^O01|"
        f"{generate_message_control_id()}|P|2.5||||||UNICODE UTF-8",
        f"PID|1||{esc(item.patient_id)}^^^{esc(item.issuer)}||{pn(item.patient_name)}",
        f"ORC|SC|{placer}|{filler}||IP",
        "|".join(obr),
        f"ZDS|{esc(item.study_instance_uid)}^^Application^DICOM",
    ])  # fmt: skip
