"""The CLI's side of the daemon's control socket (see ``outbound.control``).

Only the standard library and the progress bar: a command that goes through
the daemon starts without peewee, the models or the DICOM libraries.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import TextIO

from pacsbox.progress import Bar

SOCKET_NAME = "control.sock"  # outbound.control.SOCKET_NAME (checked by a test)


def request(
    data_dir: Path, message: dict, out: TextIO | None = None, err: TextIO | None = None
) -> int | None:
    """Send ``message`` to the running daemon and print what it answers; the exit code,
    or None when no daemon listens (the caller then does the work itself)."""
    out = out or sys.stdout
    err = err or sys.stderr
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(Path(data_dir) / SOCKET_NAME))
    except OSError:
        sock.close()
        return None
    bars: dict[str, Bar] = {}
    with sock, sock.makefile("rwb") as fh:
        fh.write(json.dumps(message).encode() + b"\n")
        fh.flush()
        for line in fh:
            answer = json.loads(line)
            if "out" in answer:
                print(answer["out"], file=out, flush=True)
            elif "bar" in answer:
                label, done, total = answer["bar"]
                bars.setdefault(label, Bar(label, err))(done, total)
            elif "exit" in answer:
                if answer.get("error"):
                    print(f"pacsbox: {answer['error']}", file=err)
                return int(answer["exit"])
    print("pacsbox: the daemon closed the control socket without an answer", file=err)
    return 1
