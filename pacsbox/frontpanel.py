"""The front panel: a small display that shows what the box is doing (BOX-5).

Its own process (``pacsbox frontpanel``, unit pacsbox-frontpanel@.service), so a
hung daemon cannot freeze the panel: it only reads the daemon's status snapshot
(pacsbox.status) once a second and says "PACSBOX NOT RUNNING" when the snapshot
is missing or stale. Screens cycle every few seconds when they do not all fit.

Drivers share one small interface (``Display``). Hardware libraries (RPLCD for
HD44780 character LCDs behind a PCF8574 I2C backpack, luma.oled for SSD1306
OLEDs) are imported inside their drivers, so pacsbox runs without them and
``open_display`` falls back to the console with one log line.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from pacsbox import status

log = logging.getLogger("pacsbox.frontpanel")

REFRESH_SECONDS = 1.0
CYCLE_SECONDS = 4.0


class Display(Protocol):
    width: int  # characters per line
    rows: int  # lines per screen

    def show(self, lines: list[str]) -> None: ...


class ConsoleDisplay:
    """A terminal (tty1 on the appliance) or, when not a TTY, plain text lines.

    On a TTY the screen is cleared and redrawn, sized to the terminal. Elsewhere
    (a pipe, the journal) a screen is printed only when it differs from the last
    one, and it is tall enough that nothing pages, so logs do not fill with
    repeats.
    """

    def __init__(
        self, stream: TextIO | None = None, width: int | None = None, rows: int | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        size = shutil.get_terminal_size((80, 24)) if self.tty else os.terminal_size((80, 100))
        self.width = width or size.columns
        self.rows = rows or size.lines
        self._last: list[str] | None = None

    def show(self, lines: list[str]) -> None:
        if self.tty:
            self.stream.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        elif lines != self._last:
            self.stream.write("\n".join(lines) + "\n\n")
        self.stream.flush()
        self._last = list(lines)


class HD44780Display:
    """A character LCD (16x2, 20x4) behind a PCF8574 I2C backpack, through RPLCD.

    Rows are rewritten in place, never cleared, so the display does not flicker;
    RPLCD caches what is shown and sends only changed characters.
    """

    def __init__(
        self,
        bus: int = 1,
        address: int = 0x27,
        width: int = 20,
        rows: int = 4,
        expander: str = "PCF8574",
    ) -> None:
        from RPLCD.i2c import CharLCD  # optional dependency, group "frontpanel"

        self.width, self.rows = width, rows
        self.lcd = CharLCD(
            expander, address, port=bus, cols=width, rows=rows, auto_linebreaks=False
        )

    def show(self, lines: list[str]) -> None:
        for row in range(self.rows):
            text = lines[row] if row < len(lines) else ""
            self.lcd.cursor_pos = (row, 0)
            self.lcd.write_string(text[: self.width].ljust(self.width))

    def close(self) -> None:
        self.lcd.close(clear=True)


class SSD1306Display:
    """A 128x64 (or 128x32) monochrome OLED through luma.oled, PIL's default font.

    ``device`` may be any luma device (tests pass ``luma.core.device.dummy``).
    """

    def __init__(
        self, bus: int = 1, address: int = 0x3C, device: Any = None, height: int = 64
    ) -> None:
        from PIL import ImageFont

        if device is None:
            from luma.core.interface.serial import i2c
            from luma.oled.device import ssd1306

            device = ssd1306(i2c(port=bus, address=address), width=128, height=height)
        self.device = device
        loader = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
        self.font = loader()  # the fixed 6x11 bitmap font: a character grid
        left, top, right, bottom = self.font.getbbox("Mg")
        self.char_w = max(1, round(self.font.getlength("M" * 10) / 10))
        self.line_h = max(8, bottom)
        self.width = device.width // self.char_w
        self.rows = max(1, device.height // self.line_h)

    def show(self, lines: list[str]) -> None:
        from PIL import Image, ImageDraw

        image = Image.new(self.device.mode, self.device.size)
        draw = ImageDraw.Draw(image)
        for row, text in enumerate(lines[: self.rows]):
            draw.text((0, row * self.line_h), text[: self.width], fill="white", font=self.font)
        self.device.display(image)

    def close(self) -> None:
        self.device.cleanup()


def _address(text: Any, default: int) -> int:
    try:
        return int(str(text), 0)
    except ValueError:
        return default


def open_display(cfg: Any, stream: TextIO | None = None) -> Display:
    """The display named by ``cfg.DisplayDriver``, or the console when it cannot be opened."""
    driver = str(getattr(cfg, "DisplayDriver", "console")).lower()
    bus = int(getattr(cfg, "DisplayI2CBus", 1))
    try:
        if driver == "hd44780":
            return HD44780Display(
                bus,
                _address(cfg.DisplayI2CAddress, 0x27),
                int(getattr(cfg, "DisplayColumns", 20)),
                int(getattr(cfg, "DisplayRows", 4)),
            )
        if driver == "ssd1306":
            return SSD1306Display(bus, _address(cfg.DisplayI2CAddress, 0x3C))
    except ImportError as exc:
        log.warning(
            "front panel: %s driver needs %s (pip install 'pacsbox[frontpanel]'); "
            "using the console",
            driver,
            exc.name,
        )
    except Exception as exc:  # no /dev/i2c-N, no device at the address, luma errors
        log.warning(
            "front panel: cannot open %s display on I2C bus %s at %s (%s); using the console",
            driver,
            bus,
            getattr(cfg, "DisplayI2CAddress", "?"),
            exc,
        )
    return ConsoleDisplay(stream)


def render(snapshot: dict[str, Any], display: Display) -> list[list[str]]:
    """The screens for ``display``: the long text on a big console, short pages otherwise."""
    if display.width >= 60 and display.rows >= 12:
        lines = [line[: display.width] for line in status.format_text(snapshot).splitlines()]
        return [lines[i : i + display.rows] for i in range(0, len(lines), display.rows)]
    return status.screens(snapshot, display.width, display.rows) or [[]]


def run(
    cfg: Any,
    driver: Display | None = None,
    once: bool = False,
    *,
    stop: threading.Event | None = None,
    refresh: float = REFRESH_SECONDS,
    cycle: float = CYCLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    max_age: float = status.STALE_AFTER,
) -> list[list[str]]:
    """Show the status on ``driver`` (default: open_display(cfg)) until ``stop`` or SIGTERM.

    With ``once`` every screen is shown one after the other without waiting and
    they are returned (``pacsbox frontpanel --once``, tests). A display that
    fails while running is replaced by the console, with one log line.
    """
    display = driver or open_display(cfg)
    if once:
        shown = render(status.current(cfg, max_age), display)
        for screen in shown:
            display.show(screen)
        return shown
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started, first, last_error = clock(), None, ""
    while not stop.is_set():
        try:
            pages = render(status.current(cfg, max_age), display)
            now = clock()
            if pages[0][:1] != first:  # the state changed: start again at the first screen
                started, first = now, pages[0][:1]
            display.show(pages[int((now - started) // cycle) % len(pages)])
            last_error = ""
        except OSError as exc:  # I2C gone (cable, power): keep showing something
            log.warning("front panel: display failed (%s); switching to the console", exc)
            display = ConsoleDisplay()
        except Exception as exc:  # a bad snapshot must not kill the panel
            if str(exc) != last_error:
                log.error("front panel: cannot render status: %s", exc)
            last_error = str(exc)
        stop.wait(refresh)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    close = getattr(display, "close", None)
    if close:
        close()
    return []
