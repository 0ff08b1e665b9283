"""The front panel rendered to the console, an SSD1306 (luma dummy) and an HD44780 (RPLCD)."""

from __future__ import annotations

import io
import itertools
import logging
import os
import sys
import threading

import pytest

from pacsbox import config, frontpanel, status


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
