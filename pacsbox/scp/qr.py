"""Query/Retrieve SCP: C-FIND, C-MOVE and C-GET for the three models (NET-4, NET-5).

The handlers are thin: ``pacsbox.db.query`` turns the identifier into an index
query and ``pacsbox.scu`` performs the C-STORE sub-operations (``retrieve``);
here errors map to the statuses of the conformance statement (A900, C000,
A801, A702, B000, FE00) and every request gets one log line (AE, model,
level, keys, matches). C-FIND uses pynetdicom's service loop (one pending
FF00 per match), whose pending responses ``wire.find`` writes when it can.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # names made at import
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

from pacsbox import scu
from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.db import DbError, DbUnavailable, query
from pacsbox.errors import PacsboxError
from pacsbox.scp.retrieve import Retrieval
from pacsbox.scp.server import Service
from pacsbox.wire import find, retrieve, send

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
QR_SYNTAXES: list[str | UID] = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]


def make_services(
    cfg: Config, archive: Archive, decompress: scu.Decompress | None = None
) -> list[Service]:
    """C-FIND, C-MOVE and C-GET; the retrieve handlers own their exchange when
    ``wire.retrieve`` could take it over, else they follow pynetdicom's loop."""
    qr = QueryRetrieve(cfg, archive, decompress)
    contexts = [build_context(uid, QR_SYNTAXES) for uid in (*FIND, *MOVE, *GET)]
    owned = retrieve.install((*MOVE, *GET))
    handlers = [
        (evt.EVT_C_FIND, qr.on_find),
        (evt.EVT_C_MOVE, qr.on_move if owned else qr.on_move_public),
        (evt.EVT_C_GET, qr.on_get if owned else qr.on_get_public),
    ]
    return [Service(contexts=contexts, handlers=handlers)]


class QueryRetrieve:
    """The Q/R service's settings and handlers; ``decompress`` is handed to ``scu``."""

    def __init__(
        self, cfg: Config, archive: Archive, decompress: scu.Decompress | None = None
    ) -> None:
        self.cfg = cfg
        self.archive = archive
        self.decompress = decompress
        self.pn_ci = bool(getattr(cfg, "PersonNameCaseInsensitive", False))
        self.timeout = float(getattr(cfg, "DimseTimeout", 60))

    # -- C-FIND ----------------------------------------------------------------

    def on_find(self, event):
        """Yield (status, identifier): FF00 per match, then 0000/FE00/A900/C000."""
        model = FIND.get(str(event.request.AffectedSOPClassUID), query.STUDY_ROOT)
        yield from run_find(
            event,
            model,
            lambda ident: query.parse(ident, model, pn_case_insensitive=self.pn_ci),
            lambda q: query.find(q, ae_title=self.cfg.ApplicationEntityTitle),
        )

    # -- C-MOVE / C-GET ----------------------------------------------------------

    def on_move(self, event: evt.Event) -> None:
        Retrieval(self, event, "C-MOVE", MOVE).run()

    def on_get(self, event: evt.Event) -> None:
        Retrieval(self, event, "C-GET", GET).run()

    def on_move_public(self, event: evt.Event) -> Iterator:
        yield from Retrieval(self, event, "C-MOVE", MOVE).public()

    def on_get_public(self, event: evt.Event) -> Iterator:
        yield from Retrieval(self, event, "C-GET", GET).public()


class FoundQuery(Protocol):
    """What the C-FIND log line names of a parsed query."""

    level: str
    matched_keys: int


def run_find(
    event: evt.Event,
    model: str,
    parse: Callable[[Dataset], FoundQuery],
    find_all: Callable[[Any], Iterable[Dataset]],
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """One C-FIND, for any information model: ``parse`` reads the identifier, ``find_all``
    yields the responses. Pending responses go straight to the socket when they can; the
    statuses are the statement's (FF00, 0000, FE00, A700, A900, C000) and the query gets
    one log line (calling AE, model, level, keys, matches, milliseconds)."""
    t0 = time.monotonic()
    send.nodelay(event.assoc)
    calling = event.assoc.requestor.ae_title.strip()
    try:
        ident = event.identifier
        q = parse(ident)
    except PacsboxError as exc:
        log.warning("C-FIND from %s (%s) refused 0x%04X: %s", calling, model, exc.dimse_status, exc)
        yield failure(exc.dimse_status, str(exc)), None
        return
    except Exception as exc:  # noqa: BLE001 - an undecodable identifier
        log.warning("C-FIND from %s (%s): cannot read identifier: %s", calling, model, exc)
        yield failure(0xC000, f"identifier cannot be read: {exc}"), None
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

    pending = find.pending_sender(event)
    try:
        with send.busy(event.assoc):
            for rsp in find_all(q):
                if event.is_cancelled:
                    done("cancelled")
                    yield 0xFE00, None
                    return
                matches += 1
                if pending is None or not pending(rsp):
                    yield 0xFF00, rsp
    except OSError as exc:  # the peer went away mid-answer (pending responses go direct)
        done(f"connection lost: {exc.strerror or exc}")
        yield 0xC000, None  # pynetdicom finds the closed transport and ends the association
        return
    except DbUnavailable as exc:
        done(f"database busy: {exc}")
        yield failure(0xA700, "database busy, try again"), None
        return
    except (DbError, PacsboxError, ValueError) as exc:
        done(f"failed: {exc}")
        yield failure(0xC000, str(exc)), None
        return
    done("success")


_KEY_PATH = re.compile(r"\b(?:[A-Z][A-Za-z]+\.)+([A-Z][A-Za-z]+)\b")


def failure(status: int, comment: str) -> Dataset:
    """A final C-FIND status with its reason in Error Comment (0000,0902), one LO of 64."""
    ds = Dataset()
    ds.Status = status
    text = _KEY_PATH.sub(r"\1", " ".join(comment.split()))  # a sequence's key by its own name
    text = text.encode("ascii", "replace").decode("ascii")
    ds.ErrorComment = text[:64]  # the command set is ASCII
    return ds


def _debug_identifier(ds: Dataset) -> str:
    parts = []
    for elem in ds:
        if elem.VR != "SQ" and elem.value not in (None, ""):
            parts.append(f"{elem.keyword}={elem.value}")
    return ", ".join(parts)
