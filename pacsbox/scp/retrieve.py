"""C-MOVE and C-GET SCP (NET-5): the index says what matches, ``scu`` sends it.

Normally the handler owns the exchange (``wire.retrieve``): stored bytes go
out as stored, one context per SOP class with the stored syntax plus
Implicit VR LE, converted only when the peer accepts nothing else, with no
limit on the number of instances. When ``wire.compat`` found pynetdicom's
internals changed, ``public`` serves the request through pynetdicom's own
retrieve loop instead: every file is decoded and sent in its stored syntax
(converted for C-GET when the requestor did not accept it), and more than
65,535 matches are refused (C516).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # pynetdicom makes its SOP class names at import

from pacsbox import scu
from pacsbox.db import DbError, query
from pacsbox.db import aes as db_aes
from pacsbox.errors import PacsboxError
from pacsbox.wire import retrieve, send

if TYPE_CHECKING:
    from pacsbox.scp.qr import QueryRetrieve

log = logging.getLogger("pacsbox.scp.qr")

US_MAX = 65535  # Number of ... Sub-operations are US
PENDING_INTERVAL = 0.02  # seconds between pending C-MOVE/C-GET responses


class Retrieval:
    """One C-MOVE or C-GET: answers on the requestor's association, sends sub-operations.

    ``qr`` is the service (``scp.qr.QueryRetrieve``): its settings and archive.
    """

    def __init__(self, qr: QueryRetrieve, event: evt.Event, kind: str, models: dict) -> None:
        self.qr = qr
        self.event = event
        self.kind = kind
        self.assoc = event.assoc
        self.req = cast("C_MOVE | C_GET", event.request)  # the event of a C-MOVE or C-GET handler
        self.cx = event.context
        self.model = models.get(str(self.req.AffectedSOPClassUID), query.STUDY_ROOT)
        self.calling = event.assoc.requestor.ae_title.strip()
        self.t0 = time.monotonic()
        self.level = "?"
        self.keys = 0
        self.cancel_seen = False

    def _cancelled(self) -> bool:
        # pynetdicom forgets a C-CANCEL once it has been reported: remember it.
        if not self.cancel_seen and self.event.is_cancelled:
            self.cancel_seen = True
        return self.cancel_seen

    # responses ------------------------------------------------------------------

    def _respond(
        self,
        status: int,
        counts: scu.Counts | None = None,
        *,
        final: bool = True,
        failed_uids: list[str] | None = None,
    ) -> None:
        rsp = C_MOVE() if self.kind == "C-MOVE" else C_GET()
        rsp.MessageIDBeingRespondedTo = self.req.MessageID
        rsp.AffectedSOPClassUID = self.req.AffectedSOPClassUID
        rsp.Status = status
        if counts is not None:
            if not final or status == 0xFE00:
                rsp.NumberOfRemainingSuboperations = min(max(counts.remaining, 0), US_MAX)
            rsp.NumberOfCompletedSuboperations = min(counts.completed, US_MAX)
            rsp.NumberOfFailedSuboperations = min(counts.failed, US_MAX)
            rsp.NumberOfWarningSuboperations = min(counts.warning, US_MAX)
        if failed_uids:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = failed_uids
            ts = self.cx.transfer_syntax
            rsp.Identifier = io.BytesIO(
                encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated) or b""
            )
        if self.assoc.is_established:
            retrieve.respond(self.assoc, self.cx.context_id, rsp)

    def _log(self, what: str, counts: scu.Counts | None = None, extra: str = "") -> None:
        c = (
            f", {counts.completed} sent, {counts.failed} failed, {counts.warning} warnings"
            if counts is not None
            else ""
        )
        log.info(
            "%s from %s model %s level %s: %d keys%s%s: %s (%.0f ms)",
            self.kind,
            self.calling,
            self.model,
            self.level,
            self.keys,
            extra,
            c,
            what,
            (time.monotonic() - self.t0) * 1000,
        )

    # what matches -----------------------------------------------------------------

    def _query(self) -> tuple[query.Query | None, int]:
        """The parsed retrieve query, or None and the status that refuses it (logged)."""
        try:
            q = query.parse(self.event.identifier, self.model, pn_case_insensitive=self.qr.pn_ci)
            self.level, self.keys = q.level, q.matched_keys
            query.retrieve_query(q)
        except PacsboxError as exc:
            self._log(f"refused 0x{exc.dimse_status:04X}: {exc}")
            return None, exc.dimse_status
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            self._log(f"cannot read identifier: {exc}")
            return None, 0xC000
        return q, 0x0000

    def _matches(self, q: query.Query) -> tuple[int, dict[str, set[str]]] | None:
        """How many instances match and their SOP classes' stored syntaxes; None (logged)
        when the index cannot say."""
        try:
            total = query.retrieve_count(q)
            return total, (query.retrieve_syntaxes(q) if total else {})
        except DbError as exc:
            self._log(f"database: {exc}")
            return None

    def _peer(self) -> scu.Peer | None:
        """The move destination from the AE table, or None (logged: A801)."""
        move = cast(C_MOVE, self.req)  # only a C-MOVE has a destination
        title = str(move.MoveDestination or "").strip()
        ae = db_aes.ae_get(title) if title else None
        host = (ae.hostname or ae.ipaddr) if ae is not None else ""
        if ae is None or not ae.allowaccess or not host or not ae.port:
            self._log(f"move destination {title!r} unknown (A801)")
            return None
        return scu.Peer(title, host, int(ae.port))

    # the exchange, owned by the handler ----------------------------------------------

    def run(self) -> None:
        send.nodelay(self.assoc)
        q, refused = self._query()
        if q is None:
            self._respond(refused)
            return
        peer = None
        if self.kind == "C-MOVE":
            peer = self._peer()
            if peer is None:
                self._respond(0xA801)
                return
        found = self._matches(q)
        if found is None:
            self._respond(0xA701)
            return
        total, syntaxes = found
        counts = scu.Counts(remaining=total)
        if total == 0:
            self._log("nothing matched")
            self._respond(0x0000, counts)
            return
        if peer is not None:  # C-MOVE
            store_assoc, outcome = scu.open_store_association(
                self.qr.cfg.ApplicationEntityTitle,
                peer,
                syntaxes,
                timeout=self.qr.timeout,
                max_pdu=self.qr.cfg.MaxPDULength,
                service="move",
            )
            if store_assoc is None:
                self._log(
                    f"destination {peer.title} ({peer.host}:{peer.port}) did not accept: "
                    + outcome.words()
                )
                self._respond(0xA702, counts)
                return
            sender = scu.Sender(
                store_assoc,
                originator_ae=self.calling,
                originator_id=self.req.MessageID,
                decompress=self.qr.decompress,
            )
        else:
            store_assoc = None
            sender = scu.Sender(self.assoc, decompress=self.qr.decompress)
        try:
            with send.busy(self.assoc, sender.assoc):
                finished = sender.send_all(
                    query.retrieve_instances(q),
                    counts,
                    cancelled=self._cancelled,
                    progress=self._progress(sender),
                )
        finally:
            if store_assoc is not None and store_assoc.is_established:
                store_assoc.release()
        extra = f", {total} matched" + (
            f", {sender.converted} converted" if sender.converted else ""
        )
        if not finished:
            cancelled = self.cancel_seen
            self._log("cancelled" if cancelled else "association lost", counts, extra)
            if cancelled:
                self._respond(0xFE00, counts, failed_uids=counts.failed_uids)
            elif self.kind == "C-MOVE":
                counts.failed += counts.remaining
                counts.remaining = 0
                self._respond(0xA702, counts, failed_uids=counts.failed_uids)
            return
        if counts.failed or counts.warning:
            status = 0xA702 if counts.completed == 0 and counts.warning == 0 else 0xB000
            self._log(f"0x{status:04X}", counts, extra)
            self._respond(status, counts, failed_uids=counts.failed_uids)
            return
        self._log("success", counts, extra)
        self._respond(0x0000, counts)

    def _progress(self, sender: scu.Sender) -> Callable[[scu.Counts], None]:
        """Pending responses (optional, PS3.4 C.4.2.3.1): the first at once, then at
        most one per PENDING_INTERVAL, so a fast move is not slowed by hundreds of
        status messages. For C-GET on the raw path they go out on the same socket
        in order with the sub-operations, never from pynetdicom's DUL thread."""
        cx_id = self.cx.context_id

        def pending(c: scu.Counts) -> None:
            if self.kind != "C-GET" or not sender.get_pending(cx_id, self.req, c):
                self._respond(0xFF00, c, final=False)

        last = [0.0]

        def progress(c: scu.Counts) -> None:
            now = time.monotonic()
            if now - last[0] >= PENDING_INTERVAL:
                last[0] = now
                pending(c)

        return progress

    # the exchange through pynetdicom's own retrieve loop ------------------------------

    def public(self) -> Iterator:
        """The handler as pynetdicom's retrieve loop wants it: for C-MOVE the
        destination first, then the number of sub-operations, then (status, data set)
        per instance. A refusal opens and releases the destination association
        (C-MOVE) before its status goes out: the loop has no earlier way to fail."""
        send.nodelay(self.assoc)
        q, status = self._query()
        peer = None
        if self.kind == "C-MOVE":
            peer = self._peer()
            if peer is None:
                yield None, None  # pynetdicom answers A801
                return
        found = self._matches(q) if q is not None else None
        if q is not None and found is None:
            status = 0xA701
        total, syntaxes = found if found is not None else (0, {})
        if peer is not None:  # C-MOVE
            contexts = scu.store_contexts(syntaxes) or [build_context(Verification)]
            yield (
                peer.host,
                peer.port,
                {
                    "contexts": contexts,
                    "ae_title": peer.title,
                    "max_pdu": self.qr.cfg.MaxPDULength,
                },
            )
        if status != 0x0000 or q is None:  # no query comes with a refusal status
            yield 1
            yield status, None
            return
        self._log(f"{total} matched, sent through pynetdicom's retrieve loop")
        yield total
        offered: dict[str, list[str]] = {}
        if self.kind == "C-GET":
            for cx in self.assoc.accepted_contexts:
                if cx.as_scu:
                    offered.setdefault(str(cx.abstract_syntax), []).append(
                        str(cx.transfer_syntax[0])
                    )
        for item in query.retrieve_instances(q):
            if self._cancelled():
                yield 0xFE00, None
                return
            yield 0xFF00, self._dataset(item, offered.get(item.sop_class_uid))

    def _dataset(self, item: query.StoredInstance, offered: list[str] | None) -> Dataset:
        """The instance as stored, or converted when the requestor's accepted syntaxes
        (C-GET) leave no other way; a data set pynetdicom cannot send fails that
        sub-operation."""
        ts = UID(item.transfer_syntax_uid)
        if (
            offered
            and item.transfer_syntax_uid not in offered
            and (ts.is_compressed or not ts.is_little_endian)
        ):
            converted = scu.convert(item, offered, self.qr.decompress)
            if converted is not None:
                return converted
        return scu.stored_dataset(item)
