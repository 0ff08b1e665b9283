"""C-STORE sub-operations: stored instances sent over one association.

C-MOVE sends on ONE association to the destination, proposing one context
per SOP class found with the stored transfer syntaxes plus Implicit VR
Little Endian (NET-5). A file whose stored syntax was accepted goes out as
stored, byte for byte, read from disk one buffer at a time (flat memory);
otherwise it is converted to an uncompressed syntax the peer accepted
(``scu.convert``). C-GET uses the same sender on the requestor's own
association. ``wire.send`` writes the requests when it can, pynetdicom's
``send_c_store`` otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import build_context

from pacsbox.db.query import StoredInstance
from pacsbox.scu.associate import Outcome, open_association
from pacsbox.scu.convert import Decompress, convert
from pacsbox.scu.echo import Peer, make_ae
from pacsbox.wire import pdu, send
from pacsbox.wire.send import RawStoreWriter

log = logging.getLogger("pacsbox.scu")

MAX_CONTEXTS = 128  # PS3.8: odd context IDs 1..255

# Local failure statuses for sub-operations that never reached the peer.
NO_CONTEXT = 0x0122  # SOP class not supported (no accepted context)
CANNOT_CONVERT = 0xA900
NO_RESPONSE = 0xA702


def store_contexts(syntaxes: dict[str, set[str]]) -> list:
    """One context per SOP class: its stored transfer syntaxes, then Implicit VR LE."""
    out = []
    for cls in sorted(syntaxes)[:MAX_CONTEXTS]:
        ts = sorted(t for t in syntaxes[cls] if t and t != ImplicitVRLittleEndian)
        out.append(build_context(cls, [*ts, ImplicitVRLittleEndian]))
    return out


def open_store_association(
    calling_ae: str,
    peer: Peer,
    syntaxes: dict[str, set[str]],
    *,
    timeout: float = 60.0,
    max_pdu: int = 0,
    service: str = "store",
) -> tuple[Association | None, Outcome]:
    """Associate with a C-STORE destination (``service`` names why, for the association
    log: store, move, forward); the association is None when it was not accepted."""
    ae = make_ae(calling_ae, timeout)
    assoc, outcome = open_association(
        ae, calling_ae, peer, service, contexts=store_contexts(syntaxes), max_pdu=max_pdu
    )
    if not assoc.is_established:
        return None, outcome
    send.nodelay(assoc)
    return assoc, outcome


@dataclass
class Counts:
    """Sub-operation counts of one C-MOVE/C-GET (PS3.4 C.4.2.1.4)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def add(self, uid: str, status: int | None) -> None:
        self.remaining -= 1
        if status == 0x0000:
            self.completed += 1
        elif status is not None and (status & 0xF000) == 0xB000:
            self.warning += 1
        else:
            self.failed += 1
            if len(self.failed_uids) < 10000:
                self.failed_uids.append(uid)


class Sender:
    """Sends stored instances over an established association (we are the storage SCU)."""

    def __init__(
        self,
        assoc: Association,
        *,
        originator_ae: str | None = None,
        originator_id: int | None = None,
        decompress: Decompress | None = None,
    ) -> None:
        self.assoc = assoc
        send.nodelay(assoc)
        self.originator_ae = originator_ae
        self.originator_id = originator_id
        self.decompress = decompress
        self.accepted: dict[str, list[str]] = {}
        self.context_ids: dict[tuple[str, str], int] = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                cls, ts = str(cx.abstract_syntax), str(cx.transfer_syntax[0])
                self.accepted.setdefault(cls, []).append(ts)
                self.context_ids.setdefault((cls, ts), int(cast(int, cx.context_id)))
        self.msg_id = 0
        self.converted = 0
        self.raw = send.raw_writer(assoc)

    def _next_id(self) -> int:
        self.msg_id = self.msg_id % 65535 + 1
        return self.msg_id

    def send(self, item: StoredInstance) -> int | None:
        """C-STORE one instance; returns the peer's status, or a local failure status."""
        offered = self.accepted.get(item.sop_class_uid)
        if not offered:
            return NO_CONTEXT
        raw = self.raw
        if raw is not None:
            return self._send_raw(raw, item, offered)
        try:
            payload: Path | Dataset | None
            if item.transfer_syntax_uid in offered and not item.native:
                payload = Path(item.path)
            else:
                payload = convert(item, offered, self.decompress)
                if payload is None:
                    return CANNOT_CONVERT
                self.converted += 1
            send.settle(self.assoc)
            rsp = self.assoc.send_c_store(
                payload,
                msg_id=self._next_id(),
                originator_aet=self.originator_ae,
                originator_id=self.originator_id,
            )
        except (OSError, ValueError, AttributeError, RuntimeError) as exc:
            log.warning("C-STORE of %s failed locally: %s", item.sop_instance_uid, exc)
            return CANNOT_CONVERT
        if "Status" not in rsp:
            return None
        return int(rsp.Status)

    def get_pending(self, cx_id: int, request: C_GET | C_MOVE, counts: Counts) -> bool:
        """A pending C-GET-RSP in order with the sub-operations on the raw path;
        False when there is no raw path (the caller answers through pynetdicom)."""
        if self.raw is None:
            return False
        self.raw.get_pending(
            cx_id,
            pdu.get_pending(
                str(request.AffectedSOPClassUID),
                int(cast(int, request.MessageID)),
                counts.remaining,
                counts.completed,
                counts.failed,
                counts.warning,
            ),
        )
        return True

    def finish(self) -> None:
        """Hand the association's reactor back after sends made with ``send``."""
        if self.raw is not None:
            self.raw.resume()

    def _hold(self) -> None:
        if self.raw is not None:
            self.raw.pause()
            self.raw.hold()

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Many ``send`` calls in a row on our own association (a forward): pynetdicom's
        loop on short delays and the raw writer holding the socket until the end."""
        with send.busy(self.assoc):
            self._hold()
            try:
                yield
            finally:
                self.finish()

    def _send_raw(
        self, raw: RawStoreWriter, item: StoredInstance, offered: list[str]
    ) -> int | None:
        raw.pause()  # idempotent; ``finish`` or the end of send_all resumes
        msg_id = self._next_id()
        try:
            command = pdu.store_request(
                item.sop_class_uid,
                item.sop_instance_uid,
                msg_id,
                self.originator_ae,
                self.originator_id,
            )
            if item.transfer_syntax_uid in offered:
                # As stored, byte for byte (a Native file is the bare data set).
                cx_id = self.context_ids[(item.sop_class_uid, item.transfer_syntax_uid)]
                return raw.send(cx_id, command, item.path, None, native=item.native)
            ds = convert(item, offered, self.decompress)
            if ds is None:
                return CANNOT_CONVERT
            ts = next(
                UID(t) for t in offered if not UID(t).is_compressed and UID(t).is_little_endian
            )
            data = encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
            if data is None:
                return CANNOT_CONVERT
            self.converted += 1
            return raw.send(self.context_ids[(item.sop_class_uid, str(ts))], command, None, data)
        except (ValueError, AttributeError, KeyError, StopIteration) as exc:
            log.warning("C-STORE of %s failed locally: %s", item.sop_instance_uid, exc)
            return CANNOT_CONVERT
        except OSError as exc:
            # A local file error, or the peer went away (then the association ends).
            log.warning("C-STORE of %s failed: %s", item.sop_instance_uid, exc)
            if not raw.alive():
                self.assoc.abort()
            return NO_RESPONSE

    def send_all(
        self,
        items: Iterable[StoredInstance],
        counts: Counts,
        *,
        cancelled: Callable[[], bool],
        progress: Callable[[Counts], None] | None = None,
    ) -> bool:
        """Send every item; False when cancelled or the association went away."""
        self._hold()
        try:
            for item in items:
                if cancelled():
                    return False
                if not self.assoc.is_established:
                    return False
                counts.add(item.sop_instance_uid, self.send(item))
                if progress is not None:
                    progress(counts)
            return True
        finally:
            self.finish()
