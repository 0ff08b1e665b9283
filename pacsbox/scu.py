"""Outgoing DICOM: C-ECHO (the web page's Ping) and C-STORE sub-operations.

C-MOVE sends on ONE association to the destination, proposing one context
per SOP class found with the stored transfer syntaxes plus Implicit VR
Little Endian (NET-5). A file whose stored syntax was accepted goes out as
stored, byte for byte, read from disk one buffer at a time (flat memory):
``RawStoreWriter`` writes the C-STORE PDUs to the socket itself and lets
pynetdicom decode only the responses. Otherwise the file is converted to the
uncompressed syntax the peer accepted, decompressing with pylibjpeg (or GDCM)
through pydicom. C-GET uses the same sender on the requestor's own
association. When the socket cannot be written directly, pynetdicom's own
send_c_store is used (chunked from the file).
"""

from __future__ import annotations

import array
import contextlib
import io
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, pdata
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


_NOT_MINE = object()  # the next PDU is not a P-DATA-TF: pynetdicom's to read


def _dataset_offset(fh, path: str) -> int:
    """Where the data set starts in a stored Part-10 file (after the group 2 meta)."""
    head = fh.read(144)
    if len(head) == 144 and head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL":
        (length,) = struct.unpack_from("<I", head, 140)
        return 144 + length
    return split_dataset(Path(path))[1]


class RawStoreWriter:
    """Writes C-STORE requests straight to the association's socket and reads
    their responses straight back (``pdata``).

    pynetdicom spends ~3 ms of Python per image (message objects, a queue hop
    to its DUL thread per PDV, per-chunk reads); Orthanc sends a 0.5 MB image
    in ~0.5 ms. Here the command set is encoded once per image and the data
    set goes out as P-DATA-TF PDUs read straight from the stored file into one
    buffer. The response used to come back through pynetdicom's DUL thread
    (decode, event queue, DIMSE queue, a wake-up of this thread): 0.4 ms of
    every image's 0.6 ms. While ``hold()`` is in force the DUL thread leaves
    the socket alone (``pdata.Tap``) and ``response()`` reads the P-DATA-TF
    itself; any other PDU (A-ABORT, A-RELEASE-RQ) is only peeked at, the hold
    is lifted and pynetdicom handles it as always. A C-CANCEL-RQ read this way
    is filed where pynetdicom files it, so ``event.is_cancelled`` still sees
    it. The association's reactor is kept paused for the whole transfer.
    """

    def __init__(self, assoc) -> None:
        self.assoc = assoc
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        self.sock = sock
        peer = assoc.acceptor if assoc.is_requestor else assoc.requestor
        max_pdu = int(peer.maximum_length or 0)
        # PDU = 6 header + 4 item length + 2 (context, control) + fragment
        self.fragment = (max_pdu - 12) if max_pdu > 12 else 1 << 20
        self.buf = bytearray(self.fragment + 12)
        self.view = memoryview(self.buf)
        self.paused_here = False
        self.held = False
        self._saved_delay = None
        self.timeout = float(getattr(assoc, "dimse_timeout", None) or 60.0)

    @property
    def usable(self) -> bool:
        return self.sock is not None and self.sock.fileno() >= 0

    def pause(self) -> None:
        """Stop the reactor from reading the DIMSE queue (no-op inside the reactor)."""
        a = self.assoc
        if threading.current_thread() is a or self.paused_here:
            return
        a._reactor_checkpoint.clear()
        deadline = time.monotonic() + 5.0
        while not a._is_paused and a.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0001)
        self.paused_here = True

    def resume(self) -> None:
        self.unhold()
        if self.paused_here:
            self.assoc._reactor_checkpoint.set()
            self.paused_here = False

    def hold(self) -> None:
        """Keep the DUL thread off the socket's input (it still sends what it is given)."""
        if self.held:
            return
        dul = self.assoc.dul
        pdata.Tap.of(dul).hold()
        # Nothing to poll for while held: don't let busy_dul's short delay spin it.
        self._saved_delay = getattr(dul, "_run_loop_delay", None)
        if self._saved_delay is not None:
            dul._run_loop_delay = max(self._saved_delay, 0.001)
        self.held = True

    def unhold(self) -> None:
        if not self.held:
            return
        dul = self.assoc.dul
        pdata.Tap.of(dul).release()
        if self._saved_delay is not None:
            dul._run_loop_delay = self._saved_delay
        self.held = False
        waker = getattr(dul, "_pacsbox_waker", None)
        if waker is not None:
            waker.wake_dul()  # it may be asleep in select() without the socket

    def _pdv(self, cx_id: int, control: int, data) -> None:
        n = len(data)
        head = pdata.pdu_header(n, cx_id, control)
        self.sock.sendall(head + bytes(data) if n < 65536 else head)
        if n >= 65536:
            self.sock.sendall(data)

    def command(self, item: StoredInstance, msg_id: int, originator_ae, originator_id) -> bytes:
        """The C-STORE-RQ command set (PS3.7 9.3.1.1)."""
        parts = [
            pdata.element(pdata.AFFECTED_SOP_CLASS, pdata.ui(item.sop_class_uid)),
            pdata.element(pdata.COMMAND_FIELD, pdata.us(pdata.C_STORE_RQ)),
            pdata.element(pdata.MESSAGE_ID, pdata.us(msg_id)),
            pdata.element(pdata.PRIORITY, pdata.us(0x0000)),  # medium
            pdata.element(pdata.DATA_SET_TYPE, pdata.us(pdata.HAS_DATA_SET)),
            pdata.element(pdata.AFFECTED_SOP_INSTANCE, pdata.ui(item.sop_instance_uid)),
        ]
        if originator_ae:
            parts.append(pdata.element(pdata.MOVE_ORIGINATOR_AE, pdata.ae_title(originator_ae)))
            parts.append(pdata.element(pdata.MOVE_ORIGINATOR_ID, pdata.us(int(originator_id or 0))))
        return pdata.command_set(*parts)

    def get_pending(self, cx_id: int, request, counts: Counts) -> None:
        """A pending C-GET-RSP (FF00) on the same socket, so it never interleaves with a PDU."""
        cmd = Dataset()
        cmd.AffectedSOPClassUID = request.AffectedSOPClassUID
        cmd.CommandField = 0x8010  # C-GET-RSP
        cmd.MessageIDBeingRespondedTo = request.MessageID
        cmd.CommandDataSetType = 0x0101  # no data set
        cmd.Status = 0xFF00
        cmd.NumberOfRemainingSuboperations = min(max(counts.remaining, 0), 65535)
        cmd.NumberOfCompletedSuboperations = min(counts.completed, 65535)
        cmd.NumberOfFailedSuboperations = min(counts.failed, 65535)
        cmd.NumberOfWarningSuboperations = min(counts.warning, 65535)
        body = encode(cmd, True, True)
        self._pdv(
            cx_id, pdata.COMMAND | pdata.LAST, struct.pack("<HHII", 0, 0, 4, len(body)) + body
        )

    def send(self, cx_id: int, command: bytes, path: str | None, data: bytes | None, native=False):
        """Send one C-STORE-RQ and wait for its response; the peer's status or None."""
        head = pdata.pdu_header(len(command), cx_id, pdata.COMMAND | pdata.LAST) + command
        if data is not None:
            self.sock.sendall(head)
            mv = memoryview(data)
            for start in range(0, len(mv), self.fragment):
                chunk = mv[start : start + self.fragment]
                last = start + self.fragment >= len(mv)
                self._pdv(cx_id, pdata.LAST if last else 0x00, chunk)
        else:
            with open(path, "rb", buffering=0) as fh:
                offset = 0 if native else _dataset_offset(fh, path)
                fh.seek(offset)
                size = os.fstat(fh.fileno()).st_size - offset
                sent = 0
                while sent < size or size == 0:
                    want = min(self.fragment, size - sent)
                    got = fh.readinto(self.view[12 : 12 + want])
                    if not got:
                        break
                    sent += got
                    last = sent >= size
                    self.buf[:12] = pdata.pdu_header(got, cx_id, pdata.LAST if last else 0x00)
                    if head:
                        # The command PDU and the first data PDU in one system call
                        # (and one segment on the wire when the data is small).
                        self._send_parts(head, self.view[: 12 + got])
                        head = b""
                    else:
                        self.sock.sendall(self.view[: 12 + got])
                    if last:
                        break
                if head:
                    self.sock.sendall(head)  # an empty file: the command alone
        return self.response()

    def _send_parts(self, *parts) -> None:
        """sendall() for several buffers with one sendmsg() where the kernel takes it all."""
        sent = self.sock.sendmsg(parts)
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            self.sock.sendall(memoryview(part)[sent:])
            sent = 0

    def response(self) -> int | None:
        """The status of the C-STORE-RSP that answers the request just sent."""
        if self.held:
            try:
                status = self._read_response()
            except (OSError, ValueError) as exc:
                log.warning("C-STORE response could not be read: %s", exc)
                status = None
            if status is not _NOT_MINE:
                if status is None and self.assoc.is_established:
                    log.error("no C-STORE response within the DIMSE timeout: aborting")
                    self.assoc.abort()
                return status
            self.unhold()  # a PDU for pynetdicom: let its DUL thread read it
        _, rsp = self.assoc.dimse.get_msg(block=True)
        if rsp is None:
            # DIMSE timeout or the peer went away: like pynetdicom, end the association.
            if self.assoc.is_established:
                log.error("no C-STORE response within the DIMSE timeout: aborting")
                self.assoc.abort()
            return None
        status = getattr(rsp, "Status", None)
        return int(status) if status is not None else None

    def _read_response(self):
        """Read P-DATA-TF PDUs until a C-STORE-RSP command is complete.

        Returns its status, None on timeout, or _NOT_MINE when the next PDU is
        not a P-DATA-TF (it is left unread for pynetdicom).
        """
        command = bytearray()
        deadline = time.monotonic() + self.timeout
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            kind = self.sock.recv(1, socket.MSG_PEEK)
            if not kind:
                raise ConnectionError("the peer closed the connection")
            if kind[0] != pdata.P_DATA_TF:
                return _NOT_MINE
            (length,) = struct.unpack(">I", bytes(pdata.recv_exact(self.sock, 6)[2:6]))
            body = pdata.recv_exact(self.sock, length)
            restart = getattr(getattr(self.assoc.dul, "_idle_timer", None), "restart", None)
            if restart is not None:
                restart()  # the DUL did not see this traffic: keep its idle timer honest
            for _cx, control, fragment in pdata.pdvs(body):
                if not control & pdata.COMMAND:
                    continue  # no data set follows a C-STORE-RSP or a C-CANCEL-RQ
                command += fragment
                if not control & pdata.LAST:
                    continue
                cmd = pdata.Command(bytes(command))
                command = bytearray()
                if cmd.field == pdata.C_STORE_RSP:
                    return cmd.numbers.get(pdata.STATUS)
                if cmd.field == pdata.C_CANCEL_RQ:  # for the C-GET in progress
                    self._file_cancel(cmd.numbers.get(pdata.MESSAGE_ID_RESPONDED))

    def _file_cancel(self, msg_id: int | None) -> None:
        if msg_id is None:
            return
        from pynetdicom.dimse_primitives import C_CANCEL  # noqa: PLC0415 - rare

        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = msg_id
        self.assoc.dimse.cancel_req[msg_id] = cancel


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
        self.context_ids: dict[tuple[str, str], int] = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                cls, ts = str(cx.abstract_syntax), str(cx.transfer_syntax[0])
                self.accepted.setdefault(cls, []).append(ts)
                self.context_ids.setdefault((cls, ts), int(cx.context_id))
        self.msg_id = 0
        self.converted = 0
        raw = RawStoreWriter(assoc)
        self.raw: RawStoreWriter | None = raw if raw.usable else None

    def _next_id(self) -> int:
        self.msg_id = self.msg_id % 65535 + 1
        return self.msg_id

    def send(self, item: StoredInstance) -> int | None:
        """C-STORE one instance; returns the peer's status, or a local failure status."""
        offered = self.accepted.get(item.sop_class_uid)
        if not offered:
            return NO_CONTEXT
        if self.raw is not None:
            return self._send_raw(item, offered)
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

    def finish(self) -> None:
        """Hand the association's reactor back after sends made with ``send``."""
        if self.raw is not None:
            self.raw.resume()

    def _send_raw(self, item: StoredInstance, offered: list[str]) -> int | None:
        self.raw.pause()  # idempotent; ``finish`` or the end of send_all resumes
        msg_id = self._next_id()
        try:
            command = self.raw.command(item, msg_id, self.originator_ae, self.originator_id)
            if item.transfer_syntax_uid in offered:
                # As stored, byte for byte (a Native file is the bare data set).
                cx_id = self.context_ids[(item.sop_class_uid, item.transfer_syntax_uid)]
                return self.raw.send(cx_id, command, item.path, None, native=item.native)
            ds = convert(item, offered)
            if ds is None:
                return CANNOT_CONVERT
            ts = next(
                UID(t) for t in offered if not UID(t).is_compressed and UID(t).is_little_endian
            )
            data = encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
            if data is None:
                return CANNOT_CONVERT
            self.converted += 1
            return self.raw.send(
                self.context_ids[(item.sop_class_uid, str(ts))], command, None, data
            )
        except (ValueError, AttributeError, KeyError, StopIteration) as exc:
            log.warning("C-STORE of %s failed locally: %s", item.sop_instance_uid, exc)
            return CANNOT_CONVERT
        except OSError as exc:
            # A local file error, or the peer went away (then the association ends).
            log.warning("C-STORE of %s failed: %s", item.sop_instance_uid, exc)
            if not self._socket_alive():
                self.assoc.abort()
            return NO_RESPONSE

    def _socket_alive(self) -> bool:
        try:
            return self.raw is not None and self.raw.sock.fileno() >= 0
        except OSError:
            return False

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
        if self.raw is not None:
            self.raw.pause()
            self.raw.hold()
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


def convert(item: StoredInstance, offered: list[str]):
    """The instance decoded into an uncompressed syntax the peer accepted, or None.

    Compressed pixel data is decompressed with pylibjpeg/GDCM (pydicom picks
    the plugin); Big Endian binary values are byte-swapped; Explicit/Implicit
    VR LE and Deflated are re-encoded by pynetdicom.
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
        _swap_words(ds, ds.get("BitsAllocated"))
        return ds
    if ts.is_compressed:
        try:
            if decompress_elsewhere is not None and not pydicom_config.have_numpy:
                return dcmread(io.BytesIO(decompress_elsewhere(data)))
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - no plugin or a corrupt stream: a failed sub-op
            log.warning("cannot decompress %s (%s): %s", item.sop_instance_uid, ts.name, exc)
            return None
    return ds


# Set in a process that leaves the pixel libraries out (a DICOM worker: numpy
# and its decoders are 14 MB of every process): Part-10 bytes in, the same
# object decompressed as Part-10 bytes out, done by the daemon.
decompress_elsewhere: Callable[[bytes], bytes] | None = None


def decompressed(data: bytes) -> bytes:
    """A compressed Part-10 object decompressed (Explicit VR Little Endian), as Part-10 bytes."""
    ds = dcmread(io.BytesIO(data))
    ds.decompress(generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# Bytes per word of the raw binary VRs whose order depends on the transfer syntax.
_WORD = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_ARRAY_CODE = {2: "H", 4: "I", 8: "Q"}


def _swap_words(ds: Dataset, bits_allocated: int | None) -> None:
    """Byte-swap a Big Endian data set's raw binary values in place (PS3.5 7.3).

    pydicom decodes numbers (US, SS, FL...) by themselves, so they re-encode
    in any byte order; OW/OL/OF/OD/OV stay the bytes read and must be turned
    word by word. Pixel Data of more than 8 bits is swapped per pixel cell;
    8-bit (OB) data has no byte order.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item, bits_allocated)
            continue
        width = _WORD.get(elem.VR)
        if elem.tag == 0x7FE00010:
            width = 2 if not bits_allocated or bits_allocated <= 16 else bits_allocated // 8
            if bits_allocated == 8 or elem.VR == "OB":
                width = None
        if (
            width not in _ARRAY_CODE
            or not isinstance(elem.value, (bytes, bytearray))
            or len(elem.value) % width
        ):
            continue
        words = array.array(_ARRAY_CODE[width], elem.value)
        words.byteswap()
        elem.value = words.tobytes()
