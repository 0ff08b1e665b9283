"""What a film looks like (SCU-7): display format, film size, orientation, copies.

Apart from the print SCU so the web form and the CLI check a print before it
is queued; nothing here opens an association.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pacsbox.errors import UsageError

FILM_SIZES = ("8INX10IN", "8_5INX11IN", "10INX12IN", "10INX14IN", "11INX14IN", "11INX17IN",
              "14INX14IN", "14INX17IN", "24CMX24CM", "24CMX30CM", "A4", "A3")  # fmt: skip
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
MAX_COPIES = 99


@dataclass(frozen=True)
class Film:
    """How to print: the display format (``STANDARD\\C,R``), film size, orientation, copies."""

    layout: str = "STANDARD\\1,1"
    film_size: str = "14INX17IN"
    orientation: str = "PORTRAIT"
    copies: int = 1

    @property
    def boxes(self) -> int:
        cols, rows = _grid(self.layout)
        return cols * rows


def _grid(layout: str) -> tuple[int, int]:
    m = re.fullmatch(r"STANDARD\\(\d{1,2}),(\d{1,2})", layout)
    if not m or not all(1 <= int(g) <= 10 for g in m.groups()):
        raise UsageError("layout: STANDARD\\C,R (or CxR), 1 to 10 columns and rows, e.g. 2x2")
    return int(m.group(1)), int(m.group(2))


def film(layout: str = "1x1", film_size: str = "14INX17IN", orientation: str = "PORTRAIT",
         copies: int = 1) -> Film:  # fmt: skip
    """A checked Film from what a user types (``2x2`` or ``STANDARD\\2,2``); raises UsageError."""
    text = layout.strip().upper()
    m = re.fullmatch(r"(\d{1,2})\s*[X,]\s*(\d{1,2})", text)
    if m:
        text = f"STANDARD\\{int(m.group(1))},{int(m.group(2))}"
    _grid(text)
    size = film_size.strip().upper()
    if size not in FILM_SIZES:
        raise UsageError(f"film size: one of {', '.join(FILM_SIZES)}")
    turn = orientation.strip().upper()
    if turn not in ORIENTATIONS:
        raise UsageError("orientation: PORTRAIT or LANDSCAPE")
    if not 1 <= copies <= MAX_COPIES:
        raise UsageError(f"copies: 1 to {MAX_COPIES}")
    return Film(text, size, turn, copies)
