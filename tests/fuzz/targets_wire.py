"""Fuzz targets for the bytes a network peer sends: data sets, PDUs, associations.

``dataset`` and ``command`` are pure parsers (``meta.parse``; the fast
receive path's PDV and command-set readers). ``associate`` and ``pdata``
send their input over TCP to a real listener assembled as the daemon
assembles it: ``associate`` as the first bytes of a connection,
``pdata`` after an accepted association. The contract each checks is the
one a modality and an operator rely on: an answer or a close, never an
exception in a thread or a traceback in the log, exactly one log line per
connection, a listener that still answers C-ECHO, and a success status
only for an image that is indexed with the bytes that were sent.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import weakref
from pathlib import Path

from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from pacsbox import config, meta
from pacsbox.errors import CannotUnderstand, DatasetMismatch
from pacsbox.wire import pdu
from tests.fuzz.harness import Defect, Target

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
CALLED, CALLING = "PACSBOX", "FUZZSCU"

# -- dataset: meta.parse ---------------------------------------------------------

# The first byte of an input picks how the store path meets it: as a Part-10
# file, or as a bare data set in the context's transfer syntax (or none, as
# from old media).
MODES: list[str | None] = [None, IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED]


def _dataset_input(data: bytes) -> None:
    if not data:
        return
    ts = MODES[data[0] % len(MODES)] if data[0] < 0x80 else None
    body = data[1:]
    try:
        parsed = meta.parse(body, ts if data[0] < 0x80 else None)
    except (CannotUnderstand, DatasetMismatch):
        return
    attrs = parsed.attrs
    if not attrs.sop_instance_uid or not attrs.study_instance_uid:
        raise Defect("parse accepted a data set without its UIDs")
    # What the archive does next with a parsed object: its Part-10 header.
    meta.part10_header(attrs, "1.2.3", "FUZZ", CALLING)


def small_dataset(sop_uid: str = "", *, name: str = "FUZZ^PATIENT") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.PatientID = "FUZZ1"
    ds.PatientName = name
    ds.StudyDate = "20261203"
    ds.Modality = "OT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 8
    ds.PixelData = b"\x00\x01\x02\x03"
    return ds


def encode(ds: Dataset, *, implicit: bool = True, little: bool = True) -> bytes:
    out = DicomBytesIO()
    out.is_implicit_VR = implicit
    out.is_little_endian = little
    write_dataset(out, ds)
    return out.getvalue()


def _dataset_seeds() -> dict[str, bytes]:
    seeds = {
        "implicit": bytes([1]) + encode(small_dataset("1.2.3.4.1")),
        "explicit": bytes([2]) + encode(small_dataset("1.2.3.4.2"), implicit=False),
        "big": bytes([3]) + encode(small_dataset("1.2.3.4.3"), implicit=False, little=False),
        "bare-no-ts": bytes([0]) + encode(small_dataset("1.2.3.4.4")),
    }
    ds = small_dataset("1.2.3.4.5", name="Yamada^Tarou=山田^太郎")
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    seeds["charset"] = bytes([1]) + encode(ds)
    seq = small_dataset("1.2.3.4.6")
    item = Dataset()
    item.CodeValue = "T-A0100"
    seq.AnatomicRegionSequence = [item]
    seeds["sequence"] = bytes([2]) + encode(seq, implicit=False)
    for name in ("rtplan.dcm", "MR_small_RLE.dcm"):
        path = get_testdata_file(name, download=False)
        if path:
            raw = Path(str(path)).read_bytes()
            if len(raw) <= 16384:
                seeds[name] = bytes([0x80]) + raw
    return seeds


# -- command: the fast receive path's PDV and command-set readers ------------------


def _command_input(data: bytes) -> None:
    try:
        items = list(pdu.pdvs(data))
    except ValueError:
        return
    for _cx, _control, fragment in items:
        cmd = pdu.Command(bytes(fragment))
        # What receive.FastStore reads of a command before taking it.
        _ = (cmd.field, cmd.numbers.get(pdu.MESSAGE_ID), cmd.texts.get(pdu.AFFECTED_SOP_INSTANCE))


def _pdv(cx: int, control: int, fragment: bytes) -> bytes:
    return struct.pack(">IBB", len(fragment) + 2, cx, control) + fragment


def _command_seeds() -> dict[str, bytes]:
    store = pdu.store_request(SECONDARY_CAPTURE, "1.2.3.4.1", 7, "MOVER", 3)
    return {
        "store": _pdv(1, pdu.COMMAND | pdu.LAST, store),
        "store+data": _pdv(1, pdu.COMMAND | pdu.LAST, store)
        + _pdv(1, pdu.LAST, encode(small_dataset("1.2.3.4.1"))),
        "response": _pdv(3, pdu.COMMAND | pdu.LAST, pdu.store_response(CT_IMAGE, "1.2.3", 1, 0)),
        "get-pending": _pdv(5, 3, pdu.get_pending(CT_IMAGE, 2, 4, 1, 0, 0)),
    }


# -- associate and pdata: a live listener ------------------------------------------


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _ascii(uid: str) -> bytes:
    return uid.encode("ascii")


def presentation_context(cx_id: int, abstract: str, syntaxes: list[str]) -> bytes:
    subs = _item(0x30, _ascii(abstract)) + b"".join(_item(0x40, _ascii(ts)) for ts in syntaxes)
    return _item(0x20, bytes([cx_id, 0, 0, 0]) + subs)


def associate_rq(
    contexts: bytes | None = None, *, called: str = CALLED, calling: str = CALLING
) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2), written out by hand so seeds can vary any field."""
    if contexts is None:
        contexts = (
            presentation_context(1, VERIFICATION, [IMPLICIT_LE])
            + presentation_context(3, SECONDARY_CAPTURE, [IMPLICIT_LE, EXPLICIT_LE])
            + presentation_context(5, STUDY_FIND, [IMPLICIT_LE])
        )
    user = _item(
        0x50,
        _item(0x51, struct.pack(">I", 16384))
        + _item(0x52, b"1.2.826.0.1.3680043.8.498.99")
        + _item(0x55, b"FUZZ"),
    )
    body = (
        struct.pack(">HH", 1, 0)
        + called.encode().ljust(16)
        + calling.encode().ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + contexts
        + user
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBII", 0x05, 0, 4, 0)
ABORT = struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0, 0)


def p_data(cx_id: int, control: int, fragment: bytes) -> bytes:
    return pdu.pdu_header(len(fragment), cx_id, control) + fragment


def store_pdus(ds: Dataset, *, cx_id: int = 3, msg_id: int = 1, split: int = 0) -> bytes:
    data = encode(ds)
    cmd = pdu.store_request(str(ds.SOPClassUID), str(ds.SOPInstanceUID), msg_id)
    out = p_data(cx_id, pdu.COMMAND | pdu.LAST, cmd)
    if split:
        out += p_data(cx_id, 0, data[:split]) + p_data(cx_id, pdu.LAST, data[split:])
    else:
        out += p_data(cx_id, pdu.LAST, data)
    return out


def echo_pdus(cx_id: int = 1, msg_id: int = 9) -> bytes:
    cmd = pdu.command_set(
        pdu.element(pdu.AFFECTED_SOP_CLASS, pdu.ui(VERIFICATION)),
        pdu.element(pdu.COMMAND_FIELD, pdu.us(0x0030)),
        pdu.element(pdu.MESSAGE_ID, pdu.us(msg_id)),
        pdu.element(pdu.DATA_SET_TYPE, pdu.us(pdu.NO_DATA_SET)),
    )
    return p_data(cx_id, pdu.COMMAND | pdu.LAST, cmd)


def find_pdus(cx_id: int = 5) -> bytes:
    cmd = pdu.command_set(
        pdu.element(pdu.AFFECTED_SOP_CLASS, pdu.ui(STUDY_FIND)),
        pdu.element(pdu.COMMAND_FIELD, pdu.us(0x0020)),
        pdu.element(pdu.MESSAGE_ID, pdu.us(4)),
        pdu.element(pdu.PRIORITY, pdu.us(0)),
        pdu.element(pdu.DATA_SET_TYPE, pdu.us(pdu.HAS_DATA_SET)),
    )
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.PatientName = "FUZZ*"
    ident.StudyInstanceUID = ""
    return p_data(cx_id, pdu.COMMAND | pdu.LAST, cmd) + p_data(cx_id, pdu.LAST, encode(ident))


# Lines the listener logs when a connection ends: exactly one per connection.
END_LINES = (
    "association rejected",
    "association from",
    "connection from",
)
END_WORDS = ("rejected", "released", "aborted", "closed")
# pynetdicom's words for an exception nobody handled (a thread or a handler died).
UNHANDLED = ("Exception in", "State Machine received an exception")


class _Watch(logging.Handler):
    """Counts the listener's end-of-connection lines; keeps what must never appear."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.ends = 0
        self.bad: list[str] = []
        self.counting = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        with self.counting:
            if record.name == "pacsbox.scp" and text.startswith(END_LINES):
                # "... to PACSBOX accepted" starts an association; an AE title of
                # the input may itself be "accepted", so only the line's end counts.
                if any(w in text for w in END_WORDS) and not text.endswith(" accepted"):
                    self.ends += 1
                    self.counting.notify_all()
            # pynetdicom logs what it handled itself with a traceback (the
            # daemon's log filter makes that one line); what it did not
            # handle says "Exception in" or comes from its state machine.
            ours = record.name.startswith("pacsbox")
            if ours and (record.exc_info or record.levelno >= logging.ERROR):
                self.bad.append(f"{record.name}: {text}")
            elif any(sign in text for sign in UNHANDLED) or record.levelno >= logging.CRITICAL:
                self.bad.append(f"{record.name}: {text}")


class Box:
    """A listener assembled as the daemon's, on a free loopback port, for one process."""

    def __init__(self, work: Path) -> None:
        from pacsbox.assembly import assemble
        from pacsbox.db import aes

        base = work / "box"
        base.mkdir(parents=True, exist_ok=True)
        ini = base / "pacsbox.ini"
        ini.write_text(
            config.default_ini(
                {
                    "DataDirectory": str(base),
                    "WebPort": "0",
                    "BindAddress": "127.0.0.1",
                    "AcseTimeout": "5",
                    "NetworkTimeout": "5",
                    "DimseTimeout": "5",
                }
            ),
            encoding="utf-8",
        )
        self.cfg = config.load(ini)
        self.parts = assemble(self.cfg)
        aes.ae_upsert(CALLING, ipaddr="127.0.0.1")
        self.watch = _Watch()
        logging.getLogger().addHandler(self.watch)
        logging.getLogger().setLevel(logging.INFO)
        self.thread_errors: list[str] = []
        previous = threading.excepthook

        def hook(args) -> None:
            self.thread_errors.append(
                f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}"
            )
            previous(args)

        threading.excepthook = hook
        self.parts.listener.start(port=0)
        self.port = self.parts.listener.port
        self.connections = 0
        self.seen_ends = 0
        self.inputs = 0
        weakref.finalize(self, self.parts.listener.stop, 2.0)

    def exchange(self, first: bytes, data: bytes) -> bytes:
        """Send ``first`` (and wait for its answer PDU), then ``data``; half-close; read to EOF."""
        self.connections += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            got = b""
            if first:
                s.sendall(first)
                got = _read_pdu(s)
                if not got or got[0] != 0x02:
                    raise Defect(f"a valid association request was not accepted: {got[:16]!r}")
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the listener closed already (it aborted): what it said is read below
            try:
                while chunk := s.recv(65536):
                    got += chunk
            except TimeoutError:
                raise Defect("the listener neither answered nor closed within 15 s") from None
            except ConnectionResetError:
                pass  # closed with our bytes unread: an abort
        return got

    def verdict(self, answer: bytes) -> None:
        """The checks every input ends with (see the module docstring)."""
        self.inputs += 1
        self._wait_for_end_line()
        if self.watch.bad:
            raise Defect(f"logged: {self.watch.bad[0]}")
        if self.thread_errors:
            raise Defect(f"exception in a thread: {self.thread_errors[0]}")
        for sop_uid, status in store_statuses(answer):
            if status in (0x0000, 0xB000, 0xB007, 0xB006):
                self._check_stored(sop_uid)
        if self.inputs % 50 == 0:
            self.echo()

    def _check_stored(self, sop_uid: str) -> None:
        from pacsbox.db import lookup

        inst = lookup.find_instance(sop_uid)
        if inst is None:
            raise Defect(f"C-STORE of {sop_uid} answered success but it is not indexed")
        if not lookup.instance_path(inst).is_file():
            raise Defect(f"C-STORE of {sop_uid} answered success but its file is missing")

    def echo(self) -> None:
        """A C-ECHO as a workstation sends it: each request after the previous answer."""
        self.connections += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(associate_rq())
            accepted = _read_pdu(s)
            s.sendall(echo_pdus())
            answer = _read_pdu(s)
            s.sendall(RELEASE_RQ)
            _read_pdu(s)
        ok = b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00"  # Status (0000,0900) = 0000
        if accepted[:1] != b"\x02" or ok not in answer:
            raise Defect(f"the listener no longer answers C-ECHO: {(accepted + answer)[:64]!r}")
        self._wait_for_end_line()

    def _wait_for_end_line(self) -> None:
        """At least one end-of-connection line since the last input's (a peer that
        closes while its request is being answered may get two)."""
        watch = self.watch
        with watch.counting:  # a loaded machine (make test) is slow to log: 15 s
            if not watch.counting.wait_for(lambda: watch.ends > self.seen_ends, timeout=15):
                raise Defect("a connection ended without a line in the log")
        self.seen_ends = self.watch.ends


def _read_pdu(s: socket.socket) -> bytes:
    head = b""
    while len(head) < 6:
        chunk = s.recv(6 - len(head))
        if not chunk:
            return head
        head += chunk
    (length,) = struct.unpack(">I", head[2:6])
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return head + body


def store_statuses(answer: bytes) -> list[tuple[str, int]]:
    """(SOP Instance UID, status) of every C-STORE-RSP in what the listener sent."""
    out = []
    pos = 0
    while pos + 6 <= len(answer):
        kind = answer[pos]
        (length,) = struct.unpack_from(">I", answer, pos + 2)
        if kind == pdu.P_DATA_TF:
            try:
                items = list(pdu.pdvs(answer[pos + 6 : pos + 6 + length]))
            except ValueError:
                items = []
            for _cx, control, fragment in items:
                if control & pdu.COMMAND:
                    cmd = pdu.Command(bytes(fragment))
                    if cmd.field == pdu.C_STORE_RSP:
                        out.append(
                            (
                                cmd.texts.get(pdu.AFFECTED_SOP_INSTANCE, ""),
                                cmd.numbers.get(pdu.STATUS, -1),
                            )
                        )
        pos += 6 + length
    return out


_boxes: list[Box] = []


def box_of(work: Path) -> Box:
    """One listener per process: the index and the log watch are process-wide."""
    if not _boxes:
        _boxes.append(Box(work))
    return _boxes[0]


def _associate_setup(work: Path):
    box = box_of(work)

    def one_input(data: bytes) -> None:
        box.verdict(box.exchange(b"", data))

    return one_input


def _pdata_setup(work: Path):
    box = box_of(work)
    first = associate_rq()

    def one_input(data: bytes) -> None:
        box.verdict(box.exchange(first, data))

    return one_input


def _associate_seeds() -> dict[str, bytes]:
    return {
        "echo": associate_rq() + echo_pdus() + RELEASE_RQ,
        "store": associate_rq() + store_pdus(small_dataset("1.2.3.9.1")) + RELEASE_RQ,
        "unknown-called": associate_rq(called="NOTUS"),
        "unknown-calling": associate_rq(calling="STRANGER"),
        "no-contexts": associate_rq(b""),
        "bad-syntax": associate_rq(presentation_context(1, CT_IMAGE, ["1.2.3.4"])),
        "abort": associate_rq() + ABORT,
    }


def _pdata_seeds() -> dict[str, bytes]:
    return {
        "store": store_pdus(small_dataset("1.2.3.8.1")) + RELEASE_RQ,
        "store-split": store_pdus(small_dataset("1.2.3.8.2"), split=40) + RELEASE_RQ,
        "store-two": store_pdus(small_dataset("1.2.3.8.3"))
        + store_pdus(small_dataset("1.2.3.8.4"), msg_id=2)
        + RELEASE_RQ,
        "echo": echo_pdus() + RELEASE_RQ,
        "find": find_pdus() + RELEASE_RQ,
        "abort-then-garbage": ABORT + b"\x55" * 12,
        "store-explicit-on-implicit": p_data(
            3, pdu.COMMAND | pdu.LAST, pdu.store_request(SECONDARY_CAPTURE, "1.2.3.8.5", 1)
        )
        + p_data(3, pdu.LAST, encode(small_dataset("1.2.3.8.5"), implicit=False))
        + RELEASE_RQ,
    }


TARGETS = [
    Target("dataset", lambda work: _dataset_input, _dataset_seeds, bounded_runs=3000),
    Target("command", lambda work: _command_input, _command_seeds, bounded_runs=5000),
    Target("associate", _associate_setup, _associate_seeds, bounded_runs=300),
    Target("pdata", _pdata_setup, _pdata_seeds, bounded_runs=300),
]
