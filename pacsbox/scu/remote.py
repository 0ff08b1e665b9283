"""C-FIND and C-MOVE to a remote Q/R SCP (SCU-2), on associations of our own.

The queue and the CLI want answers, not pynetdicom generators: ``find``
returns the matches or raises, and ``move`` returns the final counts and
status, reporting the pending responses' counts as it goes, so a retrieve
job can show progress and the runner can tell "could not reach" from
"answered with a failure".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsbox.errors import PeerError
from pacsbox.scu.echo import Peer, make_ae

log = logging.getLogger("pacsbox.scu")

FIND = {"patient": PatientRootQueryRetrieveInformationModelFind,
        "study": StudyRootQueryRetrieveInformationModelFind,
        "worklist": ModalityWorklistInformationFind}  # fmt: skip
MOVE = {"patient": PatientRootQueryRetrieveInformationModelMove,
        "study": StudyRootQueryRetrieveInformationModelMove}  # fmt: skip
MOVE_DESTINATION_UNKNOWN = 0xA801
PENDING = (0xFF00, 0xFF01)


def _open(calling_ae: str, peer: Peer, model: str, timeout: float) -> Association:
    """An association proposing ``model``; raises PeerError when it cannot be had."""
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(model)
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.title)
    except (OSError, RuntimeError) as exc:
        raise PeerError(f"{_where(peer)}: {exc}") from None
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        why = f"rejected our association (calling AE {calling_ae})"
    else:  # pynetdicom says "aborted" for a refused connection too
        why = "does not answer (connection refused, aborted or timed out)"
    raise PeerError(f"{_where(peer)} {why}")


def _where(peer: Peer) -> str:
    return f"{peer.title} ({peer.host}:{peer.port})"


def find(
    calling_ae: str, peer: Peer, identifier: Dataset, model: str = "study", timeout: float = 30.0
) -> list[Dataset]:
    """The matches of a C-FIND on the Patient Root, Study Root or Modality Worklist model.

    Raises PeerError when the peer cannot be reached, goes away, or answers
    with a failure status (the message has the status in hex).
    """
    assoc = _open(calling_ae, peer, FIND[model], timeout)
    matches: list[Dataset] = []
    final: int | None = None
    try:
        for status, found in assoc.send_c_find(identifier, FIND[model]):
            code = int(status.Status) if "Status" in status else None
            if code in PENDING:
                if found is not None:
                    matches.append(found)
                continue
            final = code
    finally:
        if assoc.is_established:
            assoc.release()
    level = str(identifier.get("QueryRetrieveLevel", ""))
    if final is None:
        raise PeerError(f"{_where(peer)} went away during the C-FIND")
    log.info("C-FIND to %s at %s level: %d matches, status %04X", _where(peer), level,
             len(matches), final)  # fmt: skip
    if final != 0 and final & 0xF000 != 0xB000:
        raise PeerError(f"{_where(peer)} answered the C-FIND with status {final:04X}")
    return matches


@dataclass
class MoveResult:
    """How a C-MOVE ended: the final status (None when the peer went away) and counts."""

    status: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    comment: str = ""

    @property
    def processed(self) -> int:
        return self.completed + self.failed + self.warning

    def summary(self) -> str:
        text = f"{self.completed + self.warning} retrieved"
        if self.warning:
            text += f" ({self.warning} with warnings)"
        if self.failed:
            text += f", {self.failed} failed"
        if self.status not in (None, 0):
            text += f" (status {self.status:04X})"
        return text


def _counts(into: MoveResult, rsp: Dataset) -> None:
    for attr, kw in (("completed", "NumberOfCompletedSuboperations"),
                     ("failed", "NumberOfFailedSuboperations"),
                     ("warning", "NumberOfWarningSuboperations"),
                     ("remaining", "NumberOfRemainingSuboperations")):  # fmt: skip
        value = rsp.get(kw)
        if value is not None and value != "":
            setattr(into, attr, int(value))


def move(
    calling_ae: str,
    peer: Peer,
    identifier: Dataset,
    destination: str,
    *,
    model: str = "study",
    timeout: float = 60.0,
    progress: Callable[[MoveResult], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> MoveResult:
    """C-MOVE what ``identifier`` names to ``destination``; the peer's counts and status.

    Raises PeerError only when the peer cannot be reached; one that goes
    away mid-way gives a result with ``status`` None. ``cancelled`` is asked
    at every pending response and sends C-CANCEL when it says so.
    """
    assoc = _open(calling_ae, peer, MOVE[model], timeout)
    out = MoveResult()
    asked_cancel = False
    try:
        responses = assoc.send_c_move(identifier, destination, MOVE[model], msg_id=1)
        for status, _ in responses:
            code = int(status.Status) if "Status" in status else None
            _counts(out, status)
            if code in PENDING:
                if progress is not None:
                    progress(out)
                if not asked_cancel and cancelled():
                    asked_cancel = True
                    _cancel(assoc, MOVE[model])
                continue
            out.status = code
            out.comment = str(status.get("ErrorComment", "") or "")
    finally:
        if assoc.is_established:
            assoc.release()
    if out.status is not None:
        out.remaining = 0 if out.status == 0 else out.remaining
    uid = identifier.get("SeriesInstanceUID") or identifier.get("StudyInstanceUID", "")
    log.info("C-MOVE of %s %s from %s to %s: %s", str(identifier.get("QueryRetrieveLevel", "")),
             uid, _where(peer), destination, out.summary())  # fmt: skip
    return out


def _cancel(assoc: Association, model: str) -> None:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == model and cx.context_id is not None:
            assoc.send_c_cancel(1, cx.context_id)
            return
