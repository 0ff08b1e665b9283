"""Query/Retrieve SCP: C-FIND, C-MOVE and C-GET for the three models (NET-4, NET-5).

The handlers are thin: ``pacsbox.db.query`` turns the identifier into an index
query and ``pacsbox.scu`` performs the C-STORE sub-operations; here errors map
to the statuses of the conformance statement (A900, C000, A801, A702, B000,
FE00) and every request gets one log line (AE, model, level, keys, matches).

C-FIND uses pynetdicom's service loop (one pending FF00 per match). For
C-MOVE and C-GET pynetdicom's own loop decodes every file into a Dataset and
re-encodes it, stops at 65,535 instances and opens the destination association
itself. We need the stored bytes streamed as stored, one context per SOP
class with the stored syntax plus Implicit VR LE, and conversion only when
the peer accepts nothing else, so the C-MOVE/C-GET handlers own the whole
exchange: ``_HandlerOwnedRetrieve`` (installed for the Q/R SOP classes) only
triggers the event and answers C000 if the handler raises.
"""

from __future__ import annotations

import io
import logging
import time

import pynetdicom.association as _pn_association
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import _config as _pn_config
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import build_context
from pynetdicom.service_class import QueryRetrieveServiceClass, attempt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
    PatientStudyOnlyQueryRetrieveInformationModelGet,
    PatientStudyOnlyQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.sop_class import uid_to_service_class as _pn_uid_to_service_class

from pacsbox import pdata, scu
from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.db import DbError, DbUnavailable, query
from pacsbox.db import index as idx
from pacsbox.errors import PacsboxError
from pacsbox.scp.server import Service

log = logging.getLogger("pacsbox.scp.qr")

FIND = {
    PatientRootQueryRetrieveInformationModelFind: query.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: query.STUDY_ROOT,
    PatientStudyOnlyQueryRetrieveInformationModelFind: query.PATIENT_STUDY_ONLY,
}
MOVE = {
    PatientRootQueryRetrieveInformationModelMove: query.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelMove: query.STUDY_ROOT,
    PatientStudyOnlyQueryRetrieveInformationModelMove: query.PATIENT_STUDY_ONLY,
}
GET = {
    PatientRootQueryRetrieveInformationModelGet: query.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelGet: query.STUDY_ROOT,
    PatientStudyOnlyQueryRetrieveInformationModelGet: query.PATIENT_STUDY_ONLY,
}
# pynetdicom would pretty-print every identifier (patient names included) for
# its debug log even when debug is off: a cost per response and a privacy leak.
_pn_config.LOG_REQUEST_IDENTIFIERS = False
_pn_config.LOG_RESPONSE_IDENTIFIERS = False

QR_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
US_MAX = 65535  # Number of ... Sub-operations are US
PENDING_INTERVAL = 0.02  # seconds between pending C-MOVE/C-GET responses


# -- retrieve service class: the handler owns the C-MOVE/C-GET exchange -------


class _HandlerOwnedRetrieve(QueryRetrieveServiceClass):
    def _move_scp(self, req, context) -> None:
        self._delegate(evt.EVT_C_MOVE, C_MOVE(), req, context)

    def _get_scp(self, req, context) -> None:
        self._delegate(evt.EVT_C_GET, C_GET(), req, context)

    def _delegate(self, event, rsp, req, context) -> None:
        rsp.MessageIDBeingRespondedTo = req.MessageID
        rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        with attempt(rsp, self.dimse, context.context_id, self.assoc) as ctx:
            ctx.error_msg = f"exception in the {event.name} handler"
            ctx.error_status = 0xC000
            evt.trigger(
                self.assoc,
                event,
                {"request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled},
            )


_RETRIEVE_UIDS = frozenset(str(u) for u in (*MOVE, *GET))


def _uid_to_service_class(uid):
    if str(uid) in _RETRIEVE_UIDS:
        return _HandlerOwnedRetrieve
    return _pn_uid_to_service_class(uid)


def install() -> None:
    """Route C-MOVE/C-GET requests to _HandlerOwnedRetrieve (idempotent)."""
    _pn_association.uid_to_service_class = _uid_to_service_class


# -- the services -----------------------------------------------------------------


def make_services(cfg: Config, archive: Archive) -> list[Service]:
    install()
    qr = QueryRetrieve(cfg, archive)
    contexts = [build_context(uid, QR_SYNTAXES) for uid in (*FIND, *MOVE, *GET)]
    handlers = [
        (evt.EVT_C_FIND, qr.on_find),
        (evt.EVT_C_MOVE, qr.on_move),
        (evt.EVT_C_GET, qr.on_get),
    ]
    return [Service(contexts=contexts, handlers=handlers)]


def _calling(event) -> str:
    return event.assoc.requestor.ae_title.strip()


class QueryRetrieve:
    def __init__(self, cfg: Config, archive: Archive) -> None:
        self.cfg = cfg
        self.archive = archive
        self.pn_ci = bool(getattr(cfg, "PersonNameCaseInsensitive", False))
        self.timeout = float(getattr(cfg, "DimseTimeout", 60))

    # -- C-FIND ----------------------------------------------------------------

    def on_find(self, event):
        """Yield (status, identifier): FF00 per match, then 0000/FE00/A900/C000."""
        t0 = time.monotonic()
        scu.nodelay(event.assoc)
        calling = _calling(event)
        model = FIND.get(str(event.request.AffectedSOPClassUID), query.STUDY_ROOT)
        try:
            ident = event.identifier
            q = query.parse(ident, model, pn_case_insensitive=self.pn_ci)
        except PacsboxError as exc:
            log.warning(
                "C-FIND from %s (%s) refused 0x%04X: %s", calling, model, exc.dimse_status, exc
            )
            yield exc.dimse_status, None
            return
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            log.warning("C-FIND from %s (%s): cannot read identifier: %s", calling, model, exc)
            yield 0xC000, None
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("C-FIND from %s: identifier %s", calling, _debug_identifier(ident))
        matches = 0

        def done(outcome: str) -> None:
            # Logged before the final status is yielded: pynetdicom stops
            # iterating after a final status.
            log.info(
                "C-FIND from %s model %s level %s: %d keys, %d matches, %s (%.0f ms)",
                calling,
                model,
                q.level,
                q.matched_keys,
                matches,
                outcome,
                (time.monotonic() - t0) * 1000,
            )

        send = _pending_sender(event)
        try:
            with scu.busy_dul(event.assoc):
                for rsp in query.find(q, ae_title=self.cfg.ApplicationEntityTitle):
                    if event.is_cancelled:
                        done("cancelled")
                        yield 0xFE00, None
                        return
                    matches += 1
                    if send is None or not send(rsp):
                        yield 0xFF00, rsp
        except DbUnavailable as exc:
            done(f"database busy: {exc}")
            yield 0xA700, None
            return
        except (DbError, PacsboxError, ValueError) as exc:
            done(f"failed: {exc}")
            yield 0xC000, None
            return
        done("success")

    # -- C-MOVE / C-GET ----------------------------------------------------------

    def on_move(self, event) -> None:
        Retrieval(self, event, "C-MOVE", MOVE).run()

    def on_get(self, event) -> None:
        Retrieval(self, event, "C-GET", GET).run()


def _pending_sender(event):
    """Writes pending C-FIND responses (FF00 + identifier) straight to the socket.

    pynetdicom spends ~0.7 ms of Python on each (message objects, a queue hop
    to its DUL thread, the command set encoded through pydicom): 30 ms of a
    40-match query. The command set is the same for every match, so it is
    encoded once; only the identifier is encoded per match. The final
    response still goes through pynetdicom, after these in order. Returns
    None when the socket is not reachable; the sender returns False when an
    identifier cannot be encoded (then pynetdicom sends that one).
    """
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return None
    cx = event.context
    ts = cx.transfer_syntax
    req = event.request
    command = pdata.find_response(str(req.AffectedSOPClassUID), int(req.MessageID), 0xFF00)
    max_pdu = int(event.assoc.requestor.maximum_length or 0)
    fragment = max_pdu - 12 if max_pdu > 12 else 1 << 20

    def send(identifier: Dataset) -> bool:
        data = encode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if data is None:
            return False
        pdata.send_message(sock, cx.context_id, command, data, fragment)
        return True

    return send


def _debug_identifier(ds: Dataset) -> str:
    parts = []
    for elem in ds:
        if elem.VR != "SQ" and elem.value not in (None, ""):
            parts.append(f"{elem.keyword}={elem.value}")
    return ", ".join(parts)


class Retrieval:
    """One C-MOVE or C-GET: answers on the requestor's association, sends sub-operations."""

    def __init__(self, qr: QueryRetrieve, event, kind: str, models: dict) -> None:
        self.qr = qr
        self.event = event
        self.kind = kind
        self.assoc = event.assoc
        self.req = event.request
        self.cx = event.context
        self.model = models.get(str(self.req.AffectedSOPClassUID), query.STUDY_ROOT)
        self.calling = _calling(event)
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
                encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
            )
        if self.assoc.is_established:
            self.assoc.dimse.send_msg(rsp, self.cx.context_id)

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

    # the exchange -----------------------------------------------------------------

    def run(self) -> None:
        scu.nodelay(self.assoc)
        try:
            q = query.parse(self.event.identifier, self.model, pn_case_insensitive=self.qr.pn_ci)
            self.level, self.keys = q.level, q.matched_keys
            query.retrieve_query(q)
        except PacsboxError as exc:
            self._log(f"refused 0x{exc.dimse_status:04X}: {exc}")
            self._respond(exc.dimse_status)
            return
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            self._log(f"cannot read identifier: {exc}")
            self._respond(0xC000)
            return
        peer = None
        if self.kind == "C-MOVE":
            peer = self._destination()
            if peer is None:
                return
        try:
            total = query.retrieve_count(q)
            syntaxes = query.retrieve_syntaxes(q) if total else {}
        except DbError as exc:
            self._log(f"database: {exc}")
            self._respond(0xA701)
            return
        counts = scu.Counts(remaining=total)
        if total == 0:
            self._log("nothing matched")
            self._respond(0x0000, counts)
            return
        if self.kind == "C-MOVE":
            store_assoc = scu.open_store_association(
                self.qr.cfg.ApplicationEntityTitle,
                peer,
                syntaxes,
                timeout=self.qr.timeout,
                max_pdu=self.qr.cfg.MaxPDULength,
            )
            if store_assoc is None:
                self._log(f"destination {peer.title} ({peer.host}:{peer.port}) did not accept")
                self._respond(0xA702, counts)
                return
            sender = scu.Sender(
                store_assoc, originator_ae=self.calling, originator_id=self.req.MessageID
            )
        else:
            store_assoc = None
            sender = scu.Sender(self.assoc)
        try:
            with scu.busy_dul(self.assoc, sender.assoc):
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

    def _progress(self, sender: scu.Sender):
        """Pending responses (optional, PS3.4 C.4.2.3.1): the first at once, then at
        most one per PENDING_INTERVAL, so a fast move is not slowed by hundreds of
        status messages. For C-GET on the raw path they go out on the same socket
        in order with the sub-operations, never from pynetdicom's DUL thread."""
        if self.kind == "C-GET" and sender.raw is not None:
            cx_id = self.cx.context_id

            def send(c):
                sender.raw.get_pending(cx_id, self.req, c)
        else:

            def send(c):
                self._respond(0xFF00, c, final=False)

        last = [0.0]

        def progress(c: scu.Counts) -> None:
            now = time.monotonic()
            if now - last[0] >= PENDING_INTERVAL:
                last[0] = now
                send(c)

        return progress

    def _destination(self) -> scu.Peer | None:
        title = str(self.req.MoveDestination or "").strip()
        ae = idx.ae_get(title) if title else None
        host = (ae.hostname or ae.ipaddr) if ae is not None else ""
        if ae is None or not ae.allowaccess or not host or not ae.port:
            self._log(f"move destination {title!r} unknown (A801)")
            self._respond(0xA801)
            return None
        return scu.Peer(title, host, int(ae.port))
