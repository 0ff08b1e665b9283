"""Operator logging: one line per event, to the journal under systemd, else to LogDirectory.

Under systemd (JOURNAL_STREAM set) lines go to the journal through
systemd-python when it is installed; otherwise to ``LogDirectory/pacsbox.log``
(rotated) and the console. Expected errors are logged as one line without a
traceback; ``--debug`` turns tracebacks on.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(log_dir: str | None, level: str = "info", *, console: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    handlers: list[logging.Handler] = []
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler

            handlers.append(JournalHandler(SYSLOG_IDENTIFIER="pacsbox"))
            console = False
        except ImportError:
            pass  # stderr goes to the journal anyway
    elif log_dir:
        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(
                Path(log_dir) / "pacsbox.log", maxBytes=20 * 1024 * 1024, backupCount=5
            )
            fh.setFormatter(logging.Formatter(FORMAT))
            handlers.append(fh)
        except OSError as exc:
            print(f"pacsbox: cannot write logs to {log_dir}: {exc.strerror}", file=sys.stderr)
    if console:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter(FORMAT))
        handlers.append(sh)
    for h in handlers:
        root.addHandler(h)
    # pynetdicom logs every PDU at INFO, and a dropped connection with a
    # traceback; operators want our one line per event.
    pnd = logging.getLogger("pynetdicom")
    pnd.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    if level != "debug":
        pnd.addFilter(_one_line)


def _one_line(record: logging.LogRecord) -> bool:
    """Drop tracebacks from a library's expected errors (network drops, timeouts)."""
    if record.exc_info:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({exc.__class__.__name__})" if exc else record.msg
        record.args = ()
        record.exc_info = None
        record.exc_text = None
    return True
