"""Outgoing DICOM: C-ECHO (the web page's Ping) and C-STORE sub-operations.

C-MOVE sends on ONE association to the destination, proposing one context
per SOP class found with the stored transfer syntaxes plus Implicit VR
Little Endian (NET-5). A file whose stored syntax was accepted is streamed
from disk as stored (byte-identical, flat memory: pynetdicom's chunked send);
otherwise it is converted to the uncompressed syntax the peer accepted,
decompressing with pylibjpeg (or GDCM) through pydicom. C-GET uses the same
sender on the requestor's own association.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsbox.db.query import StoredInstance

log = logging.getLogger("pacsbox.scu")

# Stream stored files from disk instead of decoding them (flat memory, the
# exact stored bytes go out).
_config.STORE_SEND_CHUNKED_DATASET = True

MAX_CONTEXTS = 128  # PS3.8: odd context IDs 1..255

# Local failure statuses for sub-operations that never reached the peer.
NO_CONTEXT = 0x0122  # SOP class not supported (no accepted context)
CANNOT_CONVERT = 0xA900
NO_RESPONSE = 0xA702


@dataclass(frozen=True)
class Peer:
    title: str
    host: str
    port: int


@dataclass
class EchoResult:
    ok: bool
    status: int | None
    message: str
    elapsed_ms: float


def _ae(calling_ae: str, timeout: float = 30.0) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    return ae


def echo(calling_ae: str, peer: Peer, timeout: float = 10.0) -> EchoResult:
    """C-ECHO a remote AE (SCU-1). Never raises: the result says what happened."""
    t0 = time.monotonic()
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "no answer"
        log.info("C-ECHO to %s (%s:%d): association %s", peer.title, peer.host, peer.port, why)
        return EchoResult(False, None, f"association {why}", (time.monotonic() - t0) * 1000)
    try:
        rsp = assoc.send_c_echo()
    finally:
        assoc.release()
    status = int(rsp.Status) if "Status" in rsp else None
    ms = (time.monotonic() - t0) * 1000
    ok = status == 0
    log.info("C-ECHO to %s (%s:%d): status %s", peer.title, peer.host, peer.port, status)
    return EchoResult(ok, status, "success" if ok else "no valid response", ms)


def nodelay(assoc) -> None:
    """Turn Nagle off: pynetdicom writes PDU headers and data separately, and with
    delayed ACKs each small C-STORE would otherwise wait ~40 ms."""
    try:
        sock = assoc.dul.socket.socket
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


@contextlib.contextmanager
def busy_dul(*assocs, delay: float = 0.00002):
    """Shorten pynetdicom's DUL idle sleep (1 ms) while a burst of messages flows.

    Every outgoing DIMSE message waits for the DUL thread's next loop, so a
    C-FIND with 50 matches or a C-MOVE of 500 images would otherwise pay up to
    1 ms per message; the normal delay comes back when the burst is over so an
    idle association costs no CPU.
    """
    saved = []
    for assoc in assocs:
        if getattr(assoc, "_pacsbox_waker", None) is not None:
            continue  # scp.reactor already wakes this one on work
        dul = getattr(assoc, "dul", None)
        if dul is not None and hasattr(dul, "_run_loop_delay"):
            saved.append((dul, dul._run_loop_delay))
            dul._run_loop_delay = delay
    try:
        yield
    finally:
        for dul, value in saved:
            dul._run_loop_delay = value


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
):
    """Associate with a move destination; returns None when it does not accept."""
    ae = _ae(calling_ae, timeout)
    assoc = ae.associate(
        peer.host,
        peer.port,
        contexts=store_contexts(syntaxes),
        ae_title=peer.title,
        max_pdu=max_pdu,
    )
    if not assoc.is_established:
        return None
    nodelay(assoc)
    return assoc


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
        self, assoc, *, originator_ae: str | None = None, originator_id: int | None = None
    ):
        self.assoc = assoc
        nodelay(assoc)
        self.originator_ae = originator_ae
        self.originator_id = originator_id
        self.accepted: dict[str, list[str]] = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                self.accepted.setdefault(str(cx.abstract_syntax), []).append(
                    str(cx.transfer_syntax[0])
                )
        self.msg_id = 0
        self.converted = 0

    def _next_id(self) -> int:
        self.msg_id = self.msg_id % 65535 + 1
        return self.msg_id

    def send(self, item: StoredInstance) -> int | None:
        """C-STORE one instance; returns the peer's status, or a local failure status."""
        offered = self.accepted.get(item.sop_class_uid)
        if not offered:
            return NO_CONTEXT
        try:
            if item.transfer_syntax_uid in offered and not item.native:
                payload = Path(item.path)
            else:
                payload = convert(item, offered)
                if payload is None:
                    return CANNOT_CONVERT
                self.converted += 1
            self._settle()
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

    def _settle(self) -> None:
        """Wait until the association's reactor has really resumed after the last send.

        pynetdicom's send_c_store pauses the reactor by waiting for its
        ``_is_paused`` flag, which is still True from the previous send until
        the reactor thread wakes up. Sending again before that lets the woken
        reactor take our C-STORE response off the queue as an "unexpected
        C-STORE service message", and the send then waits for the DIMSE
        timeout. Not needed when we run inside the reactor (C-GET).
        """
        a = self.assoc
        if threading.current_thread() is a:
            return
        deadline = time.monotonic() + 2.0
        while (
            a._is_paused
            and a._reactor_checkpoint.is_set()
            and a.is_alive()
            and time.monotonic() < deadline
        ):
            time.sleep(0.00005)

    def send_all(
        self,
        items: Iterable[StoredInstance],
        counts: Counts,
        *,
        cancelled: Callable[[], bool],
        progress: Callable[[Counts], None] | None = None,
    ) -> bool:
        """Send every item; False when cancelled or the association went away."""
        for item in items:
            if cancelled():
                return False
            if not self.assoc.is_established:
                return False
            counts.add(item.sop_instance_uid, self.send(item))
            if progress is not None:
                progress(counts)
        return True


def convert(item: StoredInstance, offered: list[str]):
    """The instance decoded into an uncompressed syntax the peer accepted, or None.

    Compressed pixel data is decompressed with pylibjpeg/GDCM (pydicom picks
    the plugin); Explicit/Implicit VR LE and Deflated are re-encoded by pynetdicom.
    """
    targets = [UID(t) for t in offered if not UID(t).is_compressed and UID(t).is_little_endian]
    if not targets:
        return None
    with open(item.path, "rb") as fh:
        data = fh.read()
    if item.native:
        from pacsbox import meta  # noqa: PLC0415 - only for Native storage

        attrs = meta.InstanceAttrs(
            item.sop_class_uid, item.sop_instance_uid, "", "", item.transfer_syntax_uid
        )
        data = (
            meta.part10_header(attrs, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME) + data
        )
    ds = dcmread(io.BytesIO(data))
    ts = ds.file_meta.TransferSyntaxUID
    if not ts.is_little_endian:
        return None  # Big Endian pixel data would need byte swapping: not converted
    if ts.is_compressed:
        try:
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - no plugin or a corrupt stream: a failed sub-op
            log.warning("cannot decompress %s (%s): %s", item.sop_instance_uid, ts.name, exc)
            return None
    return ds
