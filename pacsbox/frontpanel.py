"""The front panel: a small display that shows what the box is doing (BOX-5).

Its own process (``pacsbox frontpanel``, unit pacsbox-frontpanel@.service), so a
hung daemon cannot freeze the panel: it only reads the daemon's status snapshot
(pacsbox.status) once a second and says "PACSBOX NOT RUNNING" when the snapshot
is missing or stale. Screens cycle every few seconds when they do not all fit.

Drivers share one small interface (``Display``). Hardware libraries (RPLCD for
HD44780 character LCDs behind a PCF8574 I2C backpack, luma.oled for SSD1306
OLEDs) are imported inside their drivers, so pacsbox runs without them and
``open_display`` falls back to the console with one log line. The console is
every console the kernel was booted with (``console=``: tty1 on a screen,
ttyS0 for a serial terminal), and it mirrors a hardware display; only where
there is none (a container) does the panel write to standard output.

At first start, while root has no password, every display also shows the
setup code (pacsbox.setupcode), read from its own file: the status snapshot
is world-readable and never carries it. Standard output is not a display
(under systemd it is the journal), so it never shows the code.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from pacsbox import setupcode, status

log = logging.getLogger("pacsbox.frontpanel")

REFRESH_SECONDS = 1.0
CYCLE_SECONDS = 4.0
REPAINT_SECONDS = 30.0  # a terminal is redrawn at least this often (kernel messages)
KERNEL_CONSOLES = Path("/sys/class/tty/console/active")


class Display(Protocol):
    width: int  # characters per line
    rows: int  # lines per screen

    def show(self, lines: list[str]) -> None: ...


def shows_secrets(display: Display) -> bool:
    """False for a display whose output is kept (a pipe, the journal): no setup code there."""
    return bool(getattr(display, "shows_secrets", True))


class ConsoleDisplay:
    """A terminal (tty1, a serial console) or, when not a TTY, plain text lines.

    On a TTY the screen is cleared and redrawn, sized to the terminal, when it
    changes and every REPAINT_SECONDS. Elsewhere (a pipe, the journal) a screen
    is printed only when it differs from the last one, and it is tall enough
    that nothing pages, so logs do not fill with repeats.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        width: int | None = None,
        rows: int | None = None,
        *,
        owned: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.owned = owned  # opened by open_consoles: closed by close()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shows_secrets = self.tty
        size = _tty_size(self.stream) if self.tty else os.terminal_size((80, 100))
        self.width = width or size.columns
        self.rows = rows or size.lines
        self._last: list[str] | None = None
        self._drawn = 0.0

    def show(self, lines: list[str]) -> None:
        if self.tty:
            now = time.monotonic()
            if lines == self._last and now - self._drawn < REPAINT_SECONDS:
                return
            # One write per screen, lines ended for a terminal in raw mode too.
            self.stream.write("\x1b[H\x1b[2J" + "".join(line + "\r\n" for line in lines))
            self._drawn = now
        elif lines != self._last:
            self.stream.write("\n".join(lines) + "\n\n")
        self.stream.flush()
        self._last = list(lines)

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def _tty_size(stream: TextIO) -> os.terminal_size:
    """The terminal's size; 80x24 for one that does not know it (a serial line says 0x0)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        size = os.terminal_size((0, 0))
    return os.terminal_size((size.columns or 80, size.lines or 24))


def open_consoles(active: Path = KERNEL_CONSOLES, dev: Path = Path("/dev")) -> list[ConsoleDisplay]:
    """A display on each console of the kernel (``active`` lists them) that can be written.

    None in a container (its /dev has no such devices) or without the tty
    or dialout group. Opened without waiting for a serial line's carrier and
    without becoming its controlling process.
    """
    try:
        names = active.read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return []
    out = []
    for name in dict.fromkeys(names):
        path = dev / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            log.info("front panel: not on the console %s (%s)", path, exc.strerror)
            continue
        if not os.isatty(fd):
            os.close(fd)
            continue
        os.set_blocking(fd, True)
        stream = open(fd, "w", encoding="ascii", errors="replace", newline="")  # noqa: SIM115
        out.append(ConsoleDisplay(stream, owned=True))
    return out


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


def open_hardware(cfg: Any) -> Display | None:
    """The LCD or OLED named by ``cfg.DisplayDriver``; None for the console or when it cannot be opened."""
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
    return None


def open_display(cfg: Any, stream: TextIO | None = None) -> Display:
    """The display named by ``cfg.DisplayDriver``, or the console when it cannot be opened."""
    return open_hardware(cfg) or ConsoleDisplay(stream)


def open_displays(cfg: Any, stream: TextIO | None = None) -> list[Display]:
    """The configured display and the consoles (``stream`` instead of them, when given)."""
    consoles: list[Display] = [ConsoleDisplay(stream)] if stream else list(open_consoles())
    hardware = open_hardware(cfg)
    if hardware is not None:
        return [hardware, *consoles]
    return consoles or [ConsoleDisplay()]


def setup_code(cfg: Any, snapshot: dict[str, Any]) -> str | None:
    """The first-start setup code while the daemon that accepts it runs, else None."""
    if snapshot.get("state") == "not-running":
        return None
    try:
        return setupcode.read(setupcode.path(cfg.data_dir))
    except OSError as exc:  # the file belongs to another user than the panel's
        log.debug("front panel: cannot read the setup code: %s", exc)
        return None


def render(
    snapshot: dict[str, Any], display: Display, setup_code: str | None = None
) -> list[list[str]]:
    """The screens for ``display``: the long text on a big console, short pages otherwise."""
    code = setup_code if shows_secrets(display) else None
    if display.width >= 60 and display.rows >= 12:
        text = status.format_text(snapshot, setup_code=code)
        lines = [line[: display.width] for line in text.splitlines()]
        return [lines[i : i + display.rows] for i in range(0, len(lines), display.rows)]
    return status.screens(snapshot, display.width, display.rows, setup_code=code) or [[]]


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
    """Show the status on ``driver`` (default: open_displays(cfg)) until ``stop`` or SIGTERM.

    With ``once`` every screen is shown one after the other without waiting and
    they are returned (``pacsbox frontpanel --once``, on standard output, and
    tests). A display that fails while running is dropped, with one log line;
    the console is used when none is left.
    """
    displays = [driver] if driver else open_displays(cfg, sys.stdout if once else None)
    if once:
        snap = status.current(cfg, max_age)
        code = setup_code(cfg, snap)
        shown: list[list[str]] = []
        for display in displays:
            pages = render(snap, display, code)
            for screen in pages:
                display.show(screen)
            shown = shown or pages
        return shown
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cycles: dict[int, tuple[float, list[str] | None]] = {}  # display: first screen, since
    last_error = ""
    while not stop.is_set():
        try:
            snap = status.current(cfg, max_age)
            code = setup_code(cfg, snap)
            rendered = [render(snap, display, code) for display in displays]
            last_error = ""
        except Exception as exc:  # a bad snapshot must not kill the panel
            if str(exc) != last_error:
                log.error("front panel: cannot render status: %s", exc)
            last_error = str(exc)
            stop.wait(refresh)
            continue
        now = clock()
        failed = []
        for display, pages in zip(displays, rendered, strict=True):
            started, first = cycles.get(id(display), (now, None))
            if pages[0][:1] != first:  # the state changed: start again at the first screen
                started, first = now, pages[0][:1]
            cycles[id(display)] = (started, first)
            try:
                display.show(pages[int((now - started) // cycle) % len(pages)])
            except OSError as exc:  # I2C gone (cable, power), a console hung up
                log.warning("front panel: display failed (%s); leaving it out", exc)
                failed.append(display)
        if failed:
            displays = [d for d in displays if d not in failed] or [ConsoleDisplay()]
        stop.wait(refresh)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    for display in displays:
        close = getattr(display, "close", None)
        if close:
            close()
    return []
