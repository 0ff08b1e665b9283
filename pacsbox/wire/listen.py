"""The listening socket and each accepted connection, below pynetdicom's AE.

Worker processes accept from the daemon's own listening socket (inherited
at spawn), so all of them serve one port and a second daemon still cannot
bind it by mistake. Every accepted socket gets NetworkTimeout: Python hands
them out blocking, and a client that sends half a PDU header and goes quiet
would otherwise hold its thread forever.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pynetdicom.sop_class
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.transport import ThreadedAssociationServer

from pacsbox.wire import compat, guard, reactor, send


def _storage_class_uids() -> frozenset[str]:
    """pynetdicom's table of storage SOP classes; empty when it is not where wire
    expects it (then ``pynetdicom.sop_class.uid_to_service_class`` alone decides)."""
    table = getattr(pynetdicom.sop_class, "_STORAGE_CLASSES", None)
    if not isinstance(table, dict):
        return frozenset()
    return frozenset(str(uid) for uid in table.values())


_STORAGE_UIDS = _storage_class_uids()


def is_storage_like(uid: str) -> bool:
    """Known storage classes, and private or unknown UIDs a modality may send (NET-2)."""
    if uid in _STORAGE_UIDS:
        return True
    u = UID(uid)
    if u.is_private:
        return True
    service = pynetdicom.sop_class.uid_to_service_class(u)
    return service is StorageServiceClass or not u.name or u.name == u


class ListeningServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, optionally on a listening socket it inherited."""

    inherited_fd: int | None = None

    def server_bind(self) -> None:
        if self.inherited_fd is None:
            super().server_bind()
            return
        if self.socket is not None:  # made by socketserver's __init__
            self.socket.close()
        self.socket = socket.socket(fileno=self.inherited_fd)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        if self.inherited_fd is None:
            super().server_activate()


def serve(
    ae: AE,
    address: tuple[str, int],
    handlers: list,
    *,
    network_timeout: float,
    listen_fd: int | None = None,
    shared: bool = False,
    before_accept: Callable[[], None] | None = None,
    after_accept: Callable[[], None] | None = None,
    on_poll: Callable[[], None] | None = None,
) -> ThreadedAssociationServer:
    """Bind (or take the inherited ``listen_fd``) and accept in a background thread.

    ``shared``: other processes accept from the same socket, so an accept
    that finds the connection taken must fail at once. ``before_accept`` and
    ``after_accept`` run around each accept, ``on_poll`` about twice a second
    from the accept loop. Raises OSError when the port is taken.
    """
    compat.check()
    reactor.install()
    server_class: type[ListeningServer] = ListeningServer
    if listen_fd is not None:
        server_class = type("InheritedServer", (ListeningServer,), {"inherited_fd": listen_fd})
    server = ae.make_server(address, evt_handlers=handlers, server_class=server_class)
    if shared:
        assert server.socket is not None  # bound by make_server
        server.socket.settimeout(0.0)
    accept = server.get_request

    def get_request():
        if before_accept is not None:
            before_accept()
        sock, addr = accept()
        if after_accept is not None:
            after_accept()
        sock.settimeout(network_timeout)
        return sock, addr

    vars(server)["get_request"] = get_request  # this server's method, replaced on the instance
    actions = server.service_actions

    def service_actions():
        actions()
        if on_poll is not None:
            on_poll()

    vars(server)["service_actions"] = service_actions  # likewise
    thread = threading.Thread(target=server.serve_forever, name="pacsbox-accept", daemon=True)
    thread.start()
    servers = getattr(ae, "_servers", None)
    if isinstance(servers, list):
        servers.append(server)  # so AE.shutdown() and server.shutdown() agree
    return server


def shutdown(server: ThreadedAssociationServer) -> None:
    """Stop accepting and close the listening socket."""
    try:
        server.shutdown()
    except (AttributeError, ValueError):
        pass  # the socket is closed; only the AE's own list of servers did not know it


def connection_opened(assoc: Association) -> None:
    """For EVT_CONN_OPEN, before the association's threads start: its reactor
    wake-ups, answers out at once rather than after Nagle's 40 ms, and a
    protocol error ending in an abort rather than a dead thread."""
    guard.protect(assoc)
    reactor.attach(assoc)
    send.nodelay(assoc)
