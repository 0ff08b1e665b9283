"""The DICOM listener: pynetdicom wiring, access control and context negotiation.

Every association is checked against the AE table before negotiation
(NET-9). Storage contexts are built per association from what the peer
proposes, so any storage SOP class a modality sends is accepted (NET-2), the
transfer syntax the peer lists first wins unless PreferredXferSyntaxRx is
offered (NET-3), and unsupported transfer syntaxes are rejected per context.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import
from pynetdicom.transport import ThreadedAssociationServer

from pacsbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsbox.archive import Archive
from pacsbox.config import Config
from pacsbox.db import assocbuffer, assoclog
from pacsbox.scp.balance import Balance
from pacsbox.scu import PROBE_VERSION_NAME
from pacsbox.wire import listen

log = logging.getLogger("pacsbox.scp")

# NET-3: every transfer syntax we accept and store as received.
ACCEPTED_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile @ Main Level
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile @ High Level
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 2D video
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 3D video
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10
]
_ACCEPTED = set(ACCEPTED_TRANSFER_SYNTAXES)

# Association rejection reasons (PS3.8 9.3.4): (result, source, diagnostic)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient, local limit exceeded
LOOPBACK = ("127.0.0.1", "::1")
# PS3.8 Table 9-18: presentation context results that name the cause.
CONTEXT_RESULT = {0x03: "abstract syntax not supported", 0x04: "no transfer syntax supported"}


@dataclass
class Service:
    """What a DICOM service adds to the listener: fixed contexts, handlers, and what
    it did on an association for the line logged when that ends (None: nothing)."""

    contexts: list[PresentationContext] = field(default_factory=list)
    handlers: list[tuple] = field(default_factory=list)
    summary: Callable[[Association], str | None] | None = None


def route_handlers(services: Sequence[Service]) -> list[tuple]:
    """Every service's handlers; an intervention event that several bind goes to the one
    whose contexts hold the request's SOP class (pynetdicom keeps one handler per
    intervention event: the worklist and archive C-FIND, commitment and Detached Study
    N-EVENT-REPORT). A class no service lists goes to the first that bound the event."""
    out: list[tuple] = []
    shared: dict[evt.InterventionEvent, list[tuple[frozenset[str], Callable]]] = {}
    for svc in services:
        classes = frozenset(str(cx.abstract_syntax) for cx in svc.contexts)
        for entry in svc.handlers:
            event = entry[0]
            if isinstance(event, evt.InterventionEvent) and len(entry) == 2:
                shared.setdefault(event, []).append((classes, entry[1]))
            else:
                out.append(entry)
    for event, bound in shared.items():
        if len(bound) == 1:
            out.append((event, bound[0][1]))
            continue
        by_class = {uid: fn for classes, fn in reversed(bound) for uid in classes}
        out.append((event, _dispatcher(by_class, bound[0][1])))
    return out


def _dispatcher(by_class: dict[str, Callable], default: Callable) -> Callable:
    def dispatch(event: evt.Event) -> Any:  # whatever the chosen handler returns
        return by_class.get(str(event.context.abstract_syntax), default)(event)

    return dispatch


def _rejected_words(rejected: Sequence[PresentationContext]) -> str:
    """Rejected contexts in words: SOP class, the transfer syntax when that was the
    cause, and why (the first three)."""
    words = []
    for cx in rejected[:3]:
        what = UID(str(cx.abstract_syntax)).name
        if cx.result == 0x04 and cx.transfer_syntax:
            what += f" in {UID(str(cx.transfer_syntax[0])).name}"
        words.append(f"{what} ({CONTEXT_RESULT.get(cx.result or 0, 'rejected')})")
    more = f" and {len(rejected) - 3} more" if len(rejected) > 3 else ""
    return ", ".join(words) + more


def no_context(rejected: Sequence[PresentationContext]) -> tuple[str, str]:
    """The association log's reason and words when no presentation context was accepted."""
    reason = "no-transfer-syntax" if {cx.result for cx in rejected} == {0x04} else "no-context"
    return (
        reason,
        f"no presentation context accepted: {_rejected_words(rejected) or 'none proposed'}",
    )


def order_syntaxes(proposed: Sequence[str], preferred: str) -> list[str]:
    """Peer's order, filtered to what we accept; PreferredXferSyntaxRx first if offered."""
    ours = [str(ts) for ts in proposed if str(ts) in _ACCEPTED]
    if preferred and preferred in ours:
        ours.remove(preferred)
        ours.insert(0, preferred)
    return ours


class Listener:
    """The DICOM listener of one pacsbox instance."""

    def __init__(self, cfg: Config, archive: Archive, services: list[Service]) -> None:
        self.cfg = cfg
        self.archive = archive
        self.ae = AE(ae_title=cfg.ApplicationEntityTitle)
        self.ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        self.ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        self.ae.maximum_pdu_size = cfg.MaxPDULength
        # pynetdicom counts every open TCP connection against its limit, so
        # idle sockets could lock a modality out; we count only real
        # association requests ourselves (EVT_REQUESTED) and let pynetdicom
        # hold many idle connections until AcseTimeout closes them.
        self.ae.maximum_associations = max(1000, cfg.MaxAssociations * 4)
        self.ae.acse_timeout = cfg.AcseTimeout
        self.ae.dimse_timeout = cfg.DimseTimeout
        self.ae.network_timeout = cfg.NetworkTimeout
        self.ae.require_called_aet = True
        self.fixed_contexts: list[PresentationContext] = [
            build_context(Verification, ACCEPTED_TRANSFER_SYNTAXES)
        ]
        self.handlers: list[tuple] = [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_closed),
        ]
        self.summaries = [svc.summary for svc in services if svc.summary is not None]
        for svc in services:
            self.fixed_contexts.extend(svc.contexts)
        self.handlers.extend(route_handlers(services))
        for cx in self.fixed_contexts:
            assert cx.abstract_syntax is not None  # build_context always sets it
            self.ae.add_supported_context(
                cx.abstract_syntax, cx.transfer_syntax, scu_role=cx.scu_role, scp_role=cx.scp_role
            )
        self.server: ThreadedAssociationServer | None = None
        self.balance: Balance | None = None
        self.on_poll: Callable[[], None] | None = None
        self._active = 0
        self._lock = threading.Lock()
        # Associations whose end is (or will be) logged: every connection ends
        # with a line, one that never became an association too.
        self._told: weakref.WeakSet = weakref.WeakSet()
        # Connections already taken off the balance: more than one of
        # pynetdicom's close actions can report the same close.
        self._gone: weakref.WeakSet = weakref.WeakSet()
        # Associations counted in ``_active`` (against MaxAssociations).
        self._established: weakref.WeakSet = weakref.WeakSet()
        # `pacsbox ae diagnose` testing the way in: not an association to log.
        self._probes: weakref.WeakSet = weakref.WeakSet()

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else 0

    @property
    def active_associations(self) -> int:
        with self._lock:
            return self._active

    def start(
        self,
        port: int | None = None,
        *,
        listen_fd: int | None = None,
        balance: Balance | None = None,
    ) -> None:
        """Bind (or take the inherited ``listen_fd``) and serve in background threads.

        With ``balance`` this process shares the port with others and takes
        its share of connections. Raises OSError when the port is taken.
        """
        address = (self.cfg.BindAddress, self.cfg.ServerPortNumber if port is None else port)
        self.balance = balance
        self.server = listen.serve(
            self.ae,
            address,
            self.handlers,
            network_timeout=self.cfg.NetworkTimeout,
            listen_fd=listen_fd,
            shared=balance is not None,
            before_accept=balance.wait_turn if balance is not None else None,
            after_accept=balance.opened if balance is not None else None,
            on_poll=self._poll,
        )
        log.info(
            "DICOM listener %s on %s:%d", self.cfg.ApplicationEntityTitle, address[0], self.port
        )

    def _poll(self) -> None:
        # Called by the accept loop about twice a second: proof it runs.
        if self.on_poll is not None:
            self.on_poll()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let associations in flight finish (bounded), then close."""
        if self.server is None:
            return
        server, self.server = self.server, None
        listen.shutdown(server)
        deadline = time.monotonic() + timeout
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            log.warning("aborting association from %s at shutdown", assoc.requestor.ae_title)
            assoc.abort()

    # -- events ------------------------------------------------------------------

    def _on_conn_open(self, event: evt.Event) -> None:
        listen.connection_opened(event.assoc)

    def _on_conn_close(self, event: evt.Event) -> None:
        assoc = event.assoc
        if assoc in self._gone:
            return
        self._gone.add(assoc)
        if self.balance is not None:
            self.balance.closed()
        if assoc not in self._told:
            self._told.add(assoc)
            log.info(
                "connection from %s closed before an association was agreed",
                assoc.requestor.address or "an unknown address",
            )

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        rq = assoc.requestor
        primitive = rq.primitive
        assert primitive is not None  # the A-ASSOCIATE-RQ that raised this event
        calling = (primitive.calling_ae_title or "").strip()
        called = (primitive.called_ae_title or "").strip()
        address = rq.address
        if address in LOOPBACK and rq.implementation_version_name == PROBE_VERSION_NAME:
            self._probes.add(assoc)
        if called != self.cfg.ApplicationEntityTitle:
            why = ("wrong-called-ae", f"called AE {called!r} is not ours")
            self._reject(assoc, REJECT_CALLED_AE, calling, called, address, why)
            return
        refusal = (
            None if self._is_self(calling, address) else self.archive.check_peer(calling, address)
        )
        if refusal:
            self._reject(assoc, REJECT_CALLING_AE, calling, called, address, refusal)
            return
        if self.active_associations >= self.cfg.MaxAssociations:
            why = ("busy", "MaxAssociations reached")
            self._reject(assoc, REJECT_BUSY, calling, called, address, why)
            return
        self._add_storage_contexts(assoc)

    def _is_self(self, calling: str, address: str) -> bool:
        """The box's own self-check: our AE title, from this machine."""
        return calling == self.cfg.ApplicationEntityTitle and address in LOOPBACK

    def _log_in(
        self, assoc: Association, calling: str, called: str, address: str, result: str,
        reason: str = "", detail: str = "",
    ) -> None:  # fmt: skip
        """One entry for the association log: a list append, written later elsewhere."""
        if assoc not in self._probes:
            assocbuffer.record(
                assoclog.Entry("in", calling, calling, called, address, "", result, reason, detail)
            )

    def _reject(
        self,
        assoc: Association,
        rsd: tuple[int, int, int],
        calling: str,
        called: str,
        address: str,
        why: tuple[str, str],
    ) -> None:
        self._told.add(assoc)
        log.warning("association rejected: calling AE %r from %s: %s", calling, address, why[1])
        self._log_in(assoc, calling, called, address, "rejected", *why)
        assoc.acse.send_reject(*rsd)
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        # Like pynetdicom's own rejection: wait until the reject PDU is out
        # before the server closes the socket.
        assoc.kill()

    def _add_storage_contexts(self, assoc: Association) -> None:
        preferred = self.cfg.PreferredXferSyntaxRx
        fixed = {str(cx.abstract_syntax) for cx in self.fixed_contexts}
        by_class: dict[str, list[str]] = {}
        primitive = assoc.requestor.primitive
        assert primitive is not None  # called for a received A-ASSOCIATE-RQ
        for cx in primitive.presentation_context_definition_list:
            uid = str(cx.abstract_syntax)
            if uid in fixed or not listen.is_storage_like(uid):
                continue
            lst = by_class.setdefault(uid, [])
            for ts in order_syntaxes(cx.transfer_syntax, preferred):
                if ts not in lst:
                    lst.append(ts)
        if not by_class:
            return
        contexts = list(assoc.acceptor.supported_contexts)
        for uid, syntaxes in by_class.items():
            if not syntaxes:
                continue  # nothing acceptable: the context is rejected by negotiation
            cx = build_context(uid, syntaxes)
            # SCU and SCP roles allowed so a C-GET requestor can ask us to send.
            cx.scu_role = True
            cx.scp_role = True
            contexts.append(cx)
        assoc.acceptor.supported_contexts = contexts

    def _on_echo(self, event: evt.Event) -> int:
        return 0x0000

    def _on_established(self, event: evt.Event) -> None:
        self._told.add(event.assoc)  # its release or abort is logged (_on_closed)
        with self._lock:
            self._established.add(event.assoc)
            self._active += 1
        assoc = event.assoc
        rq = assoc.requestor
        calling, ours = rq.ae_title.strip(), self.cfg.ApplicationEntityTitle
        rejected = assoc.rejected_contexts
        if assoc.accepted_contexts:
            log.info("association from %s (%s) to %s accepted", calling, rq.address, ours)
            # Some contexts rejected: what a peer that then cannot send needs to know.
            detail = f"rejected {_rejected_words(rejected)}" if rejected else ""
            self._log_in(assoc, calling, ours, rq.address, assoclog.ACCEPTED, "", detail)
            return
        # Accepted with every presentation context rejected (PS3.8 allows it):
        # for the peer this is a rejection, and the log says what it proposed.
        reason, detail = no_context(rejected)
        log.warning("association from %s (%s) to %s: %s", calling, rq.address, ours, detail)
        self._log_in(assoc, calling, ours, rq.address, "rejected", reason, detail)

    def _on_closed(self, event: evt.Event) -> None:
        self._told.add(event.assoc)  # aborted while negotiating: this line is its end
        with self._lock:
            if event.assoc in self._established:  # one abort can be reported twice
                self._established.discard(event.assoc)
                self._active -= 1
        rq = event.assoc.requestor
        how = "released" if event.event == evt.EVT_RELEASED else "aborted"
        done = [s for s in (summary(event.assoc) for summary in self.summaries) if s]
        if done:
            log.info(
                "association from %s (%s) %s: %s",
                rq.ae_title.strip(),
                rq.address,
                how,
                "; ".join(done),
            )
        else:
            log.info("association from %s (%s) %s", rq.ae_title.strip(), rq.address, how)
