"""The front panel rendered to the console, an SSD1306 (luma dummy) and an HD44780 (RPLCD)."""

from __future__ import annotations

import io
import itertools
import logging
import os
import sys
import threading

import pytest

from pacsbox import config, frontpanel, setupcode, status


def _cfg(tmp_path, **changes):
    return config.Config(config.defaults(), None, tmp_path).replace(**changes)


def live_snapshot(cfg, **changes):
    snap = status.make_snapshot(
        ae_title="PACSBOX",
        port=11112,
        web_url="http://192.0.2.10:8080/",
        addresses=["192.0.2.10"],
        state="ok",
        studies_total=1234,
        instances_total=56789,
        studies_today=3,
        last_study={
            "received": status.now_iso(),
            "study_uid": "1.2.3",
            "calling_ae": "MR1",
            "modality": "MR",
            "description": "KNEE LEFT",
        },
        disk=[{"path": "/data", "percent": 91.0, "free_bytes": 9e8, "total_bytes": 1e10}],
        jobs=[{"kind": "burn", "label": "CD 1/2", "done": 30, "total": 60, "state": "running"}],
        last_error={"time": status.now_iso(), "message": "disk 91% used"},
    )
    snap.update(changes)
    status.write_snapshot(cfg.status_path, snap)
    return snap


class Recorder:
    """A Display that keeps what it was asked to show."""

    def __init__(self, width=20, rows=4, on_show=None):
        self.width, self.rows, self.shown, self.on_show = width, rows, [], on_show

    def show(self, lines):
        self.shown.append(list(lines))
        if self.on_show:
            self.on_show(self)


# -- console ------------------------------------------------------------------


def test_console_pipe_prints_the_long_text(tmp_path):
    cfg = _cfg(tmp_path)
    live_snapshot(cfg)
    out = io.StringIO()
    frontpanel.run(cfg, frontpanel.ConsoleDisplay(out), once=True)
    text = out.getvalue()
    assert "AE title: PACSBOX" in text and "192.0.2.10 port 11112" in text
    assert "91.0% used" in text and '"CD 1/2" 30/60 50% running' in text
    assert "\x1b[" not in text  # no terminal control codes into a pipe or the journal


def test_console_small_pages_and_never_repeats_itself(tmp_path):
    cfg = _cfg(tmp_path)
    live_snapshot(cfg)
    out = io.StringIO()
    display = frontpanel.ConsoleDisplay(out, width=20, rows=4)
    pages = frontpanel.run(cfg, display, once=True)
    assert len(pages) >= 3
    lines = [line for line in out.getvalue().splitlines() if line]
    assert lines[0] == "PACSBOX OK" and all(len(line) <= 20 for line in lines)
    before = out.getvalue()
    display.show(pages[-1])  # the same screen again: nothing new in the log
    assert out.getvalue() == before


def test_console_tty_redraws(tmp_path):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    cfg = _cfg(tmp_path)
    out = Tty()
    frontpanel.run(cfg, frontpanel.ConsoleDisplay(out, width=20, rows=4), once=True)
    assert out.getvalue().startswith("\x1b[H\x1b[2J")
    assert "PACSBOX NOT RUNNING" in out.getvalue()


def test_not_running_is_loud(tmp_path):
    cfg = _cfg(tmp_path)
    pages = frontpanel.run(cfg, Recorder(16, 2), once=True)
    assert pages[0][0] == "NOT RUNNING"
    assert any("PACSBOX" in line for page in pages[1:] for line in page)
    status.write_snapshot(cfg.status_path, status.make_snapshot(state="stopped"))
    assert frontpanel.run(cfg, Recorder(), once=True)[0][0] == "PACSBOX NOT RUNNING"


def test_loop_cycles_screens_and_follows_the_daemon(tmp_path):
    cfg = _cfg(tmp_path)
    stop = threading.Event()

    def script(rec):
        if len(rec.shown) == 1:  # the daemon comes up after the first frame
            live_snapshot(cfg)
        if len(rec.shown) == 4:
            stop.set()

    rec = Recorder(on_show=script)
    ticks = itertools.count(step=frontpanel.CYCLE_SECONDS)  # each refresh = next screen
    frontpanel.run(cfg, rec, stop=stop, refresh=0, clock=lambda: next(ticks))
    assert rec.shown[0][0] == "PACSBOX NOT RUNNING"
    assert rec.shown[1][0] == "PACSBOX OK"
    assert len({tuple(s) for s in rec.shown[1:]}) == 3  # three different screens


def test_loop_survives_a_display_that_fails(tmp_path, caplog, capsys):
    cfg = _cfg(tmp_path)
    stop = threading.Event()

    class Broken(Recorder):
        def show(self, lines):
            stop.set()
            raise OSError(121, "Remote I/O error")

    with caplog.at_level(logging.WARNING):
        frontpanel.run(cfg, Broken(), stop=stop, refresh=0)
    assert "display failed" in caplog.text


# -- SSD1306 through luma.oled ---------------------------------------------------


def test_ssd1306_renders_different_screens_into_the_device(tmp_path):
    pytest.importorskip("luma.core")
    from luma.core.device import dummy
    from PIL import Image, ImageChops, ImageDraw

    cfg = _cfg(tmp_path)
    live_snapshot(cfg)
    device = dummy(width=128, height=64, mode="1")
    display = frontpanel.SSD1306Display(device=device)
    assert (display.width, display.rows) == (21, 5)
    images = []
    for page in frontpanel.render(status.current(cfg), display):
        display.show(page)
        images.append(device.image.copy())
        # the pixels are exactly the page's text in the panel font
        expect = Image.new("1", (128, 64))
        draw = ImageDraw.Draw(expect)
        for row, text in enumerate(page):
            draw.text((0, row * display.line_h), text, fill="white", font=display.font)
        assert ImageChops.difference(expect, device.image).getbbox() is None
    assert len(images) >= 2
    assert all(img.getbbox() is not None for img in images)  # not blank
    assert ImageChops.difference(images[0], images[1]).getbbox() is not None


def test_ssd1306_real_driver_class_runs_without_hardware():
    pytest.importorskip("luma.oled")
    from luma.core.interface.serial import noop
    from luma.oled.device import ssd1306

    display = frontpanel.SSD1306Display(device=ssd1306(noop(), width=128, height=32))
    assert display.rows == 2
    display.show(["PACSBOX OK", "192.0.2.10"])


# -- HD44780 through RPLCD --------------------------------------------------------
# RPLCD has no offline/emulated device, so the test swaps only the I2C bus
# (smbus2.SMBus) for a model of a PCF8574 backpack wired to an HD44780: RPLCD's
# real command and data path runs, and the model's display RAM is read back.


class FakeHD44780Bus:
    """PCF8574 pins P0=RS P2=E P4..P7=D4..D7; a nibble latches on E's falling edge."""

    ROW_OFFSETS = (0x00, 0x40, 0x14, 0x54)  # 20x4 (16x2 uses the first two)
    instances: list[FakeHD44780Bus] = []

    def __init__(self, port):
        self.port, self.ddram, self.addr = port, bytearray(b" " * 128), 0
        self.prev, self.nibbles = 0, []
        FakeHD44780Bus.instances.append(self)

    def write_byte(self, address, value):
        assert address == 0x27
        if self.prev & 0x04 and not value & 0x04:
            self.nibbles.append(value >> 4)
            if len(self.nibbles) == 2:
                byte = self.nibbles[0] << 4 | self.nibbles[1]
                self.nibbles = []
                self._execute(bool(value & 0x01), byte)
        self.prev = value

    def _execute(self, is_data, byte):
        if is_data:
            self.ddram[self.addr & 0x7F] = byte
            self.addr += 1
        elif byte & 0x80:  # set DDRAM address
            self.addr = byte & 0x7F
        elif byte == 0x01:  # clear
            self.ddram[:] = b" " * 128
            self.addr = 0
        elif byte in (0x02, 0x03):  # return home
            self.addr = 0

    def text(self, cols, rows):
        return [self.ddram[o : o + cols].decode() for o in self.ROW_OFFSETS[:rows]]

    def close(self):
        pass


@pytest.fixture
def fake_bus(monkeypatch):
    rplcd_i2c = pytest.importorskip("RPLCD.i2c")
    FakeHD44780Bus.instances.clear()
    monkeypatch.setattr(rplcd_i2c, "SMBus", FakeHD44780Bus)
    return FakeHD44780Bus.instances


def test_hd44780_shows_the_screens(tmp_path, fake_bus):
    cfg = _cfg(tmp_path, DisplayDriver="hd44780", DisplayI2CAddress="0x27")
    live_snapshot(cfg)
    display = frontpanel.open_display(cfg)
    assert isinstance(display, frontpanel.HD44780Display)
    pages = frontpanel.render(status.current(cfg), display)
    for page in pages[:2]:  # the second screen overwrites the first in place
        display.show(page)
        assert fake_bus[0].text(20, 4) == [line.ljust(20) for line in page + [""] * (4 - len(page))]
    assert fake_bus[0].text(20, 4)[0].startswith("Disk 91%")


def test_hd44780_16x2(tmp_path, fake_bus):
    display = frontpanel.HD44780Display(bus=1, address=0x27, width=16, rows=2)
    display.show(["STORAGE FULL", "no new images and more"])
    assert fake_bus[0].text(16, 2) == ["STORAGE FULL    ", "no new images an"]


# -- choosing a driver --------------------------------------------------------------


@pytest.mark.parametrize("driver", ["hd44780", "ssd1306"])
def test_missing_hardware_falls_back_to_the_console(tmp_path, driver, caplog):
    pytest.importorskip("luma.oled")
    pytest.importorskip("RPLCD")
    if os.path.exists("/dev/i2c-250"):
        pytest.skip("this machine has an I2C bus 250")
    cfg = _cfg(tmp_path, DisplayDriver=driver, DisplayI2CBus=250)
    with caplog.at_level(logging.WARNING):
        display = frontpanel.open_display(cfg)
    assert isinstance(display, frontpanel.ConsoleDisplay)
    assert len(caplog.records) == 1 and "using the console" in caplog.text


def test_missing_library_falls_back_to_the_console(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "RPLCD", None)
    monkeypatch.setitem(sys.modules, "RPLCD.i2c", None)
    with caplog.at_level(logging.WARNING):
        display = frontpanel.open_display(_cfg(tmp_path, DisplayDriver="hd44780"))
    assert isinstance(display, frontpanel.ConsoleDisplay)
    assert "pacsbox[frontpanel]" in caplog.text


# -- the first-start setup code ------------------------------------------------------
# While root has no password the web layer leaves the setup code in its own file
# (pacsbox.setupcode); every display shows it, nothing else does.

CODE = "7KQM-X3RT"


def first_start(cfg, **changes):
    """A live daemon whose root has no password yet."""
    setupcode.write(setupcode.path(cfg.data_dir), CODE)
    return live_snapshot(cfg, jobs=[], last_error=None, **changes)


def test_hd44780_shows_the_code_on_a_screen_of_its_own_at_16x2(tmp_path, fake_bus):
    cfg = _cfg(tmp_path, DisplayDriver="hd44780", DisplayColumns=16, DisplayRows=2)
    first_start(cfg, web_url="http://0.0.0.0:8080/")
    display = frontpanel.open_display(cfg)
    pages = frontpanel.run(cfg, display, once=True)
    display.show(pages[0])
    assert fake_bus[0].text(16, 2) == ["Setup 7KQM-X3RT ", "192.0.2.10:8080 "]
    # ...and between every other screen, which still show the box's state (BOX-5).
    assert pages[::2] == [pages[0]] * (len(pages) // 2)
    others = [line for page in pages[1::2] for line in page]
    assert "PACSBOX OK" in others and any(line.startswith("Disk 91%") for line in others)


def test_hd44780_20x4_pins_the_code_on_every_screen(tmp_path, fake_bus):
    cfg = _cfg(tmp_path, DisplayDriver="hd44780")
    first_start(cfg)
    display = frontpanel.open_display(cfg)
    pages = frontpanel.run(cfg, display, once=True)
    assert fake_bus[0].text(20, 4)[0] == "Setup 7KQM-X3RT".ljust(20)  # the last screen shown
    assert all(page[0] == "Setup 7KQM-X3RT" for page in pages)
    assert [line for page in pages for line in page[1:]][:3] == [
        "PACSBOX OK",
        "192.0.2.10",
        "DICOM 11112",
    ]


@pytest.mark.parametrize("height", [64, 32])
def test_ssd1306_draws_the_code(tmp_path, height):
    pytest.importorskip("luma.core")
    from luma.core.device import dummy
    from PIL import Image, ImageDraw

    cfg = _cfg(tmp_path)
    first_start(cfg)
    device = dummy(width=128, height=height, mode="1")
    display = frontpanel.SSD1306Display(device=device, height=height)
    pages = frontpanel.run(cfg, display, once=True)
    display.show(pages[0])  # a 2-line OLED shows the code on a screen of its own
    expect = Image.new("1", (128, height))
    ImageDraw.Draw(expect).text((0, 0), "Setup 7KQM-X3RT", fill="white", font=display.font)
    top = (0, 0, 128, display.line_h)
    assert device.image.crop(top).tobytes() == expect.crop(top).tobytes()
    assert all(page[0] == "Setup 7KQM-X3RT" for page in pages[:: 1 if height == 64 else 2])


def test_a_terminal_shows_the_code_with_the_status(tmp_path):
    cfg = _cfg(tmp_path)
    first_start(cfg, web_url="http://0.0.0.0:8080/")
    main, side = os.openpty()
    with open(side, "w", closefd=True) as tty, open(main, "rb", buffering=0) as screen:
        frontpanel.run(cfg, frontpanel.ConsoleDisplay(tty, width=80, rows=24), once=True)
        text = screen.read(65536).decode().replace("\r", "")
    assert text.startswith("\x1b[H\x1b[2J")
    assert "Setup:    code 7KQM-X3RT" in text
    assert "enter it at http://192.0.2.10:8080/" in text  # the address a browser needs
    assert "AE title: PACSBOX" in text and "91.0% used" in text


def test_a_pipe_or_the_journal_never_gets_the_code(tmp_path):
    cfg = _cfg(tmp_path)
    first_start(cfg)
    out = io.StringIO()
    frontpanel.run(cfg, frontpanel.ConsoleDisplay(out), once=True)
    assert "AE title: PACSBOX" in out.getvalue() and CODE not in out.getvalue()


def test_no_code_while_the_daemon_that_takes_it_is_not_running(tmp_path):
    cfg = _cfg(tmp_path)
    setupcode.write(setupcode.path(cfg.data_dir), CODE)
    pages = frontpanel.run(cfg, Recorder(), once=True)
    assert pages[0][0] == "PACSBOX NOT RUNNING"
    assert not any(CODE in line for page in pages for line in page)


def test_the_code_leaves_every_display_once_root_has_a_password(tmp_path):
    cfg = _cfg(tmp_path)
    first_start(cfg)
    stop = threading.Event()

    def script(rec):
        if len(rec.shown) == 2:  # root chose a password (pacsbox.web.auth removes the file)
            setupcode.discard(setupcode.path(cfg.data_dir))
        if len(rec.shown) == 4:
            stop.set()

    lcd = Recorder(16, 2, on_show=script)
    ticks = itertools.count(step=0.1)
    frontpanel.run(cfg, lcd, stop=stop, refresh=0, clock=lambda: next(ticks))
    assert lcd.shown[0][0] == "Setup 7KQM-X3RT" and lcd.shown[1][0] == "Setup 7KQM-X3RT"
    assert lcd.shown[2][0] == lcd.shown[3][0] == "PACSBOX OK"
    assert not any(CODE in line for screen in lcd.shown[2:] for line in screen)


def test_the_console_mirrors_an_lcd(tmp_path, fake_bus, monkeypatch):
    """The code is on the LCD and on the console (a terminal) at the same time."""
    cfg = _cfg(tmp_path, DisplayDriver="hd44780", DisplayColumns=16, DisplayRows=2)
    first_start(cfg)
    main, side = os.openpty()
    with open(side, "w", closefd=True) as tty, open(main, "rb", buffering=0) as screen:
        displays = frontpanel.open_displays(cfg, tty)
        assert [type(d) for d in displays] == [
            frontpanel.HD44780Display,
            frontpanel.ConsoleDisplay,
        ]
        stop, lcd_text = threading.Event(), []
        console_show = displays[1].show

        def console_shows(lines):  # the console draws after the LCD in each round
            console_show(lines)
            lcd_text.extend(fake_bus[0].text(16, 2))
            stop.set()

        monkeypatch.setattr(displays[1], "show", console_shows)
        monkeypatch.setattr(frontpanel, "open_displays", lambda *_: displays)
        frontpanel.run(cfg, stop=stop, refresh=0)
        text = screen.read(65536).decode()
    assert lcd_text[0] == "Setup 7KQM-X3RT "
    assert "Setup:    code 7KQM-X3RT" in text and "AE title: PACSBOX" in text


def test_the_consoles_are_the_kernels(tmp_path):
    """/sys/class/tty/console/active names the consoles: each that opens is a display."""
    main, side = os.openpty()
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "ttyS0").symlink_to(os.ttyname(side))
    (dev / "null").symlink_to("/dev/null")  # not a terminal: left out
    active = tmp_path / "active"
    active.write_text("tty1 ttyS0 null\n")  # tty1: absent here, as in a container
    try:
        consoles = frontpanel.open_consoles(active, dev)
        assert len(consoles) == 1 and consoles[0].tty and consoles[0].shows_secrets
        assert (consoles[0].width, consoles[0].rows) == (80, 24)  # a serial line's 0x0
        consoles[0].show(["PACSBOX OK"])
        consoles[0].show(["PACSBOX OK"])  # unchanged: not redrawn
        consoles[0].close()
        with open(main, "rb", buffering=0) as screen:
            assert screen.read(4096) == b"\x1b[H\x1b[2JPACSBOX OK\r\r\n"
    finally:
        os.close(side)
    assert frontpanel.open_consoles(tmp_path / "missing", dev) == []
