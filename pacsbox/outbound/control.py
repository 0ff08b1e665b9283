"""The daemon's local control socket: ``pacsbox forward`` handed to the running daemon.

A forward from the shell used to open the index itself (peewee, the models,
the migration check) before queuing one row and then poll that row: about a
third of a short forward's wall time. With a daemon running, the CLI sends
the request over ``<DataDirectory>/control.sock`` (a Unix socket only its
owner may open), the daemon queues the job with the same ``forward.submit``
and follows it with the same ``wait_for``, and the CLI only prints what comes
back. The peer's user id (SO_PEERCRED), not the request, names who asked.

Protocol: one JSON request line; answer lines ``{"out": text}`` (the
command's output), ``{"bar": [label, done, total]}`` (progress) and a last
``{"exit": code, "error": one line}``.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

from pacsbox.config import Config
from pacsbox.errors import PacsboxError, UsageError
from pacsbox.outbound import forward
from pacsbox.outbound.commands import forward_command

log = logging.getLogger("pacsbox.control")
SOCKET_NAME = "control.sock"
MAX_REQUEST = 1 << 20


def socket_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / SOCKET_NAME


class _Lines:
    """A text stream whose lines go to the client as ``{"out": line}``."""

    def __init__(self, send: Callable[[dict], None]) -> None:
        self.send = send
        self._part = ""

    def write(self, text: str) -> int:
        self._part += text
        while "\n" in self._part:
            line, self._part = self._part.split("\n", 1)
            self.send({"out": line})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _peer_user(conn: socket.socket) -> str:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class ControlServer:
    """Accepts the CLI's requests on the control socket, one thread per connection."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.path = socket_path(cfg)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Listen; False (one log line, the CLI then works on its own) when it cannot."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.unlink(missing_ok=True)  # left by a daemon that was killed
            old = os.umask(0o177)
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            log.warning("control socket %s not opened: %s", self.path, exc)
            return False
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()
        return True

    def stop(self, grace: float = 5.0) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            self.path.unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join(grace)

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn,), name="control-client",
                             daemon=True).start()  # fmt: skip

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as fh:

            def send(message: dict) -> None:
                fh.write(json.dumps(message).encode() + b"\n")
                fh.flush()

            try:
                line = fh.readline(MAX_REQUEST)
                code = self._run(json.loads(line), f"cli:{_peer_user(conn)}", send)
                send({"exit": code})
            except PacsboxError as exc:
                send({"exit": exc.exit_code, "error": str(exc)})
            except (ValueError, KeyError, TypeError) as exc:
                send({"exit": 2, "error": f"a malformed control request: {exc}"})
            except OSError:
                pass  # the CLI went away (Ctrl-C): the job stays queued

    def _run(self, req: dict[str, Any], owner: str, send: Callable[[dict], None]) -> int:
        if req.get("op") != "forward":
            raise UsageError(f"unknown control request {req.get('op')!r}")
        selection = forward.Selection(
            list(req.get("patients") or []), list(req.get("studies") or []),
            list(req.get("series") or []), list(req.get("instances") or []),
        )  # fmt: skip

        def progress(label: str) -> Callable[[int, int], None]:
            last: list[tuple[int, int]] = []

            def bar(done: int, total: int) -> None:
                if not last or last[0] != (done, total):  # wait_for looks every 10 ms
                    last[:] = [(done, total)]
                    send({"bar": [label, done, total]})

            return bar

        log.info("control: forward of %s to %s for %s", selection.label(), req["to"], owner)
        return forward_command(
            self.cfg, selection, str(req["to"]), bool(req.get("wait")), owner,
            cast(TextIO, _Lines(send)), commit=bool(req.get("commit")), progress=progress,
        )  # fmt: skip
