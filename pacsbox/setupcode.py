"""The first-start setup code: how a box with no keyboard, screen or SSH gets root's password.

At first start the web layer gives ``root`` a short random code as its
one-time password and leaves the code, in plain text, in a file beside the
status snapshot that only the daemon's user may read (0600): the front panel
runs as that same user and shows the code from there, and whoever reads it
off the display enters it on the web page to choose root's password. The
status snapshot never carries it, because that file is world-readable (0644).
The file exists exactly while root has not chosen a password; whatever sets
root's password removes it.

A code is 8 characters from an alphabet without look-alikes (no 0/O, no
1/I/L) shown as two groups of four, ``7KQM-X3RT``: 9 characters, which leave
room for a label on a 16-character LCD line. 31**8 is about 2**39.6; at the
login throttle's 5 tries per 15 minutes for root, guessing takes millions of
years.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 8
FILENAME = "setup-code"


def generate() -> str:
    """A new code in its shown form (``XXXX-XXXX``)."""
    return _grouped("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def _grouped(chars: str) -> str:
    half = LENGTH // 2
    return f"{chars[:half]}-{chars[half:]}"


def canonical(text: str) -> str | None:
    """The code as shown, from what a person typed ("7kqm x3rt", "7KQMX3RT"); None if it is none."""
    chars = "".join(c for c in str(text).upper() if c not in " -\t\r\n")
    if len(chars) != LENGTH or any(c not in ALPHABET for c in chars):
        return None
    return _grouped(chars)


def path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the code of the instance whose data folder is ``data_dir`` is kept."""
    return Path(data_dir) / FILENAME


def write(where: Path, code: str) -> None:
    """Replace the file atomically, readable by this process's user only."""
    where.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + where.name + ".", dir=where.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(code + "\n")
        os.replace(tmp, where)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(where: Path) -> str | None:
    """The code in the file, or None when there is none (missing, empty, not a code).

    Raises PermissionError when the file is there but belongs to another user.
    """
    try:
        text = where.read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return canonical(text)


def discard(where: Path) -> bool:
    """Remove the file; True when there was one."""
    try:
        where.unlink()
    except FileNotFoundError:
        return False
    return True
