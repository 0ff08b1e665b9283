"""What a user may type for a film (the CLI's --layout, --film-size, the web form)."""

from __future__ import annotations

import pytest

from pacsbox.errors import UsageError
from pacsbox.scu.film import film


@pytest.mark.parametrize(
    "typed, layout, boxes",
    [("2x2", "STANDARD\\2,2", 4), ("3X4", "STANDARD\\3,4", 12), ("1x1", "STANDARD\\1,1", 1),
     ("STANDARD\\2,3", "STANDARD\\2,3", 6), ("standard\\4,5", "STANDARD\\4,5", 20)],
)  # fmt: skip
def test_layouts(typed, layout, boxes):
    f = film(typed)
    assert (f.layout, f.boxes) == (layout, boxes)


@pytest.mark.parametrize(
    "kw",
    [{"layout": "0x2"}, {"layout": "11x1"}, {"layout": "ROW\\1,2"}, {"layout": "2x"},
     {"film_size": "HUGE"}, {"orientation": "SIDEWAYS"}, {"copies": 0}, {"copies": 100}],
)  # fmt: skip
def test_what_a_printer_cannot_take_is_refused_before_queueing(kw):
    with pytest.raises(UsageError):
        film(**kw)
