"""Serve the web app from the daemon: bottle on a threaded wsgiref server.

wsgiref with ThreadingMixIn needs no extra dependency and is enough for the
handful of administrators a box has; each request runs in its own daemon
thread, so a slow image render never blocks the login page.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pacsbox.config import Config
from pacsbox.db import close_database

if TYPE_CHECKING:
    import bottle

    from pacsbox.archive import Archive

log = logging.getLogger("pacsbox.web")


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def process_request_thread(self, request, client_address):  # noqa: ANN001
        # Each request thread gets its own database connection (peewee keeps
        # them per thread); close it when the thread ends instead of leaving
        # it to the garbage collector.
        try:
            super().process_request_thread(request, client_address)
        finally:
            close_database()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - wsgiref's signature
        log.debug("web %s %s", self.address_string(), format % args)


class WebHandle:
    """The running web server: ``url``, ``port``, ``stop()``."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self.server = server
        self.thread = thread
        self.port = server.server_address[1]
        self.url = f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout)
        log.info("web page stopped")


def start_web(
    cfg: Config, archive: Archive, *, port: int | None = None, app: bottle.Bottle | None = None
) -> WebHandle | None:
    """Start serving on cfg.WebAddress:cfg.WebPort (``port`` overrides; 0 = a free port).

    Returns None when the configured WebPort is 0 and no override is given
    (the page is disabled). Raises OSError when the address cannot be bound.
    """
    if port is None:
        if not cfg.WebPort:
            log.info("web page disabled (WebPort = 0)")
            return None
        port = cfg.WebPort
    if app is None:
        from pacsbox.web.app import create_app

        app = create_app(cfg, archive)
    server = make_server(
        cfg.WebAddress, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    handle = WebHandle(server, thread, cfg.WebAddress)
    log.info("web page on %s", handle.url)
    return handle
