"""Boot the built appliance image and talk to it, as the image tests and the
benchmark need: in a container (systemd-nspawn, about a second to boot) or in
a virtual machine (qemu-system-x86_64 under software emulation, about half a
minute). Both run the image's real systemd, units, watchdog and data
partition logic; the DICOM port is reached from the host on loopback.

Commands run inside with ``box.sh("...")``: nsenter into the container's
namespaces, or the virtio-console debug shell of the VM (the image starts it
only when the kernel command line says ``pacsbox.debug_shell``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers import free_port, poll  # noqa: F401 - free_port: the image tests import it from here

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("PACSBOX_IMAGE_OUT", REPO / "image-build" / "out"))
ROOT = OUT / "root"
IMG = OUT / "pacsbox.img"
KERNEL = OUT / "vmlinuz"
INITRD = OUT / "initrd.img"
CMDLINE = OUT / "cmdline"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AE = "PACSBOX"
UNIT = f"pacsbox@{AE}.service"
BOOT_TIMEOUT = 300  # qemu: software emulation on a shared 2-core machine


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    """Poll ``check`` until truthy; AssertionError naming ``what`` after ``timeout`` s."""
    return poll(check, timeout, interval, what)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def timespan(text: str) -> float:
    """Seconds in a systemd time span as `systemctl show` prints it ("30s", "1min 30s")."""
    text = text.strip()
    if text.isdigit():
        return int(text) / 1e6  # a raw USec value
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)\s*(us|ms|min|s|h)", text):
        total += float(number) * _UNITS[unit]
    return total


def absent_reason() -> str | None:
    """Why no image test can run here at all (no image, or not root), or None."""
    skip = OUT / "skip-reason"  # left by `build.sh --for-tests` (make test)
    if skip.exists():
        return skip.read_text(encoding="utf-8", errors="replace").strip() or "image not built"
    if os.geteuid() != 0:
        return "image tests need root (systemd-nspawn, qemu with the image's files)"
    if not (ROOT / "usr/lib/pacsbox/bin/pacsbox").exists():
        return f"image not built ({ROOT} missing): run `make image` or `make test-image`"
    return None


def not_built_reason(need_disk: bool = False) -> str | None:
    """Why the image tests (of the nspawn layer, or with ``need_disk`` the qemu
    layer) cannot run here, or None."""
    reason = absent_reason()
    if reason:
        return reason
    if need_disk:
        for f in (IMG, KERNEL, INITRD, CMDLINE):
            if not f.exists():
                return f"image not built ({f} missing): run `make image`"
        if not shutil.which("qemu-system-x86_64"):
            return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    elif not shutil.which("systemd-nspawn"):
        return "systemd-nspawn not installed (apt-get install systemd-container)"
    return None


def instance_ini(port: int, web_port: int = 0, **extra: str) -> str:
    """The image's shipped default INI with this test's ports."""
    text = (ROOT / "usr/share/pacsbox/PACSBOX.ini").read_text(encoding="utf-8")
    settings = {"ServerPortNumber": str(port), "WebPort": str(web_port), **extra}
    out = []
    for line in text.splitlines():
        key = line.lstrip("#; ").split("=", 1)[0].strip()
        if "=" in line and key in settings:
            line = f"{key} = {settings.pop(key)}"
        out.append(line)
    assert not settings, f"keys not in the shipped INI: {settings}"
    return "\n".join(out) + "\n"


class Box:
    """What both kinds of box share: commands inside, units, the daemon."""

    port: int
    log_path: Path

    def sh(self, command: str, timeout: float = 60.0, check: bool = False) -> tuple[int, str]:
        raise NotImplementedError

    def out(self, command: str, timeout: float = 60.0) -> str:
        rc, text = self.sh(command, timeout)
        if rc != 0:
            raise AssertionError(f"`{command}` exited {rc} in the image: {text.strip()}")
        return text

    def show(self, unit: str, *props: str) -> dict[str, str]:
        text = self.out(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def wait_booted(self, timeout: float) -> str:
        """Wait until systemd finished starting up; returns running/degraded."""

        def state():
            rc, text = self.sh("systemctl is-system-running", timeout=30)
            found = re.findall(r"\b(running|degraded|maintenance)\b", text)
            return found[-1] if found else None

        return wait_for(state, timeout, "the image to finish booting", interval=0.5)

    def failed_units(self) -> list[str]:
        text = self.out("systemctl --failed --no-legend --plain --no-pager")
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def journal(self, unit: str, lines: int = 60) -> str:
        return self.sh(f"journalctl -b -u {unit} --no-pager -n {lines} -o cat")[1]

    def register_ae(self, title: str, host: str = "") -> None:
        """Add a calling AE to the AE table as an administrator would (pacsbox user)."""
        host_arg = f"--host {host}" if host else ""
        self.out(f"runuser -u pacsbox -- pacsbox ae add {title} {host_arg} --allow")


class NspawnBox(Box):
    """The built root in systemd-nspawn: read-only root, /var a tmpfs
    (--volatile=state, as the image's systemd.volatile=state), the data
    partition a host folder bound on /var/lib/pacsbox, the host's network."""

    def __init__(self, data: Path | None, log_path: Path, port: int = 0) -> None:
        self.data = data
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.pid1 = 0
        self.started = 0.0
        self.name = "pacsbox-test-" + uuid.uuid4().hex[:8]

    def start(self, timeout: float = 60.0) -> NspawnBox:
        cmd = [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--quiet",
            "--volatile=state",
            "-M",
            self.name,
            "-D",
            str(ROOT),
            "--console=read-only",
            "--kill-signal=SIGRTMIN+3",
        ]
        if self.data is not None:
            cmd.append(f"--bind={self.data}:/var/lib/pacsbox")
        cmd.append("--boot")
        self._log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

        def pid1():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"systemd-nspawn exited {self.proc.returncode}: see {self.log_path}"
                )
            kids = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
            )
            pids = kids.stdout.split()
            return int(pids[0]) if pids else 0

        self.pid1 = wait_for(pid1, timeout, "the container's init")
        # systemctl answers once PID 1 set up its private socket.
        # ("offline": not yet systemd, the child nspawn forks first.)
        states = r"\b(initializing|starting|running|degraded|maintenance|stopping)\b"

        def systemd_answers():
            self.pid1 = pid1()
            return self.pid1 and re.search(
                states, self.sh("systemctl is-system-running", timeout=10)[1]
            )

        wait_for(systemd_answers, timeout, "systemd inside the container")
        return self

    def sh(self, command: str, timeout: float = 60.0, check: bool = False) -> tuple[int, str]:
        proc = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.pid1),
                "-m",
                "-u",
                "-i",
                "-p",
                "--",
                "/bin/sh",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"},
        )
        return proc.returncode, proc.stdout + proc.stderr

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class QemuBox(Box):
    """The disk image in qemu-system-x86_64: the kernel and initramfs of the
    image, its GPT disk (ESP + squashfs root, the data partition appended on
    first boot), user networking with the DICOM port (and the web port)
    forwarded from loopback, the serial console in ``log_path``."""

    def __init__(
        self,
        disk: Path,
        workdir: Path,
        port: int,
        web_port: int = 0,
        memory_mb: int = 1024,
        uefi: bool = False,
        media_slots: bool = False,
    ) -> None:
        """``uefi``: boot the disk through OVMF and its systemd-boot entry, as a
        flashed PC would (no kernel options added, so no debug shell).
        ``media_slots``: an empty IDE CD drive (block node ``cd0``) and a USB 3
        controller (``xhci``), for discs and sticks hot-plugged through
        :meth:`qmp` (see :meth:`insert_disc`, :meth:`plug_usb_stick`)."""
        self.uefi = uefi
        self.media_slots = media_slots
        self.disk = disk
        self.workdir = workdir
        self.port = port
        self.web_port = web_port
        self.memory_mb = memory_mb
        self.log_path = workdir / "serial.log"
        self.sock_path = workdir / "debug.sock"
        self.qmp_path = workdir / "qmp.sock"
        self._qmp: socket.socket | None = None
        self._qmp_buf = b""
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self.started = 0.0

    @staticmethod
    def make_disk(dest: Path, size: str = "2G") -> Path:
        """A fresh copy of the flashable image, grown as if written to a bigger disk."""
        subprocess.run(["cp", "--sparse=always", str(IMG), str(dest)], check=True)
        subprocess.run(["truncate", "-s", size, str(dest)], check=True)
        return dest

    def start(self) -> QemuBox:
        fwd = f"hostfwd=tcp:127.0.0.1:{self.port}-:11112"
        if self.web_port:
            fwd += f",hostfwd=tcp:127.0.0.1:{self.web_port}-:8080"
        for old in (self.sock_path, self.qmp_path):
            if old.exists():
                old.unlink()
        self._qmp_close()
        cmdline = CMDLINE.read_text().strip() + " pacsbox.debug_shell"
        boot = ["-kernel", str(KERNEL), "-initrd", str(INITRD), "-append", cmdline]
        if self.uefi:
            vars_fd = self.workdir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_fd)
            boot = [
                "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,file={vars_fd}",
            ]  # fmt: skip
        cmd = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            str(self.memory_mb),
            "-display",
            "none",
            "-no-user-config",
            "-nodefaults",
            "-serial",
            f"file:{self.log_path}",
            *boot,
            "-drive",
            f"file={self.disk},format=raw,if=virtio",
            "-netdev",
            f"user,id=n0,{fwd}",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-device",
            "virtio-serial-pci",
            "-chardev",
            f"socket,id=dbg,path={self.sock_path},server=on,wait=off",
            "-device",
            "virtconsole,chardev=dbg",
            # The monitor, for the tests' hands: media in and out, block state.
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
        ]
        if self.media_slots:
            cmd += [
                "-drive", "if=none,id=cd0,media=cdrom,readonly=on",
                "-device", "ide-cd,drive=cd0,id=cdrom0,bus=ide.1",
                "-device", "qemu-xhci,id=xhci",
            ]  # fmt: skip
        self._out = open(self.workdir / "qemu.out", "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        wait_for(self.sock_path.exists, 30, "qemu's debug console socket")
        return self

    # -- the QEMU monitor (QMP) ---------------------------------------------------------

    def _qmp_close(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
        self._qmp = None
        self._qmp_buf = b""

    def _qmp_message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._qmp_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the QEMU monitor gave no answer in {timeout:.0f}s")
            self._qmp.settimeout(left)
            chunk = self._qmp.recv(65536)
            if not chunk:
                self._qmp_close()
                raise AssertionError("the QEMU monitor closed")
            self._qmp_buf += chunk
        line, self._qmp_buf = self._qmp_buf.split(b"\n", 1)
        return json.loads(line)

    def qmp(self, command: str, timeout: float = 30.0, **arguments):
        """Run one QMP command; its ``return`` value, AssertionError on an ``error``.
        Asynchronous events arriving meanwhile are kept in ``self.qmp_events``."""
        if self._qmp is None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(self.qmp_path))
            self._qmp, self._qmp_buf = s, b""
            self.qmp_events: list[dict] = []
            self._qmp_message(timeout)  # the greeting
            self.qmp("qmp_capabilities")
        msg: dict = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._qmp.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            answer = self._qmp_message(timeout)
            if "event" in answer:
                self.qmp_events.append(answer)
            elif "error" in answer:
                raise AssertionError(f"QMP {command} {arguments}: {answer['error']}")
            elif "return" in answer:
                return answer["return"]

    def block(self, device: str) -> dict:
        """``query-block``'s entry for a drive (``tray_open``, ``inserted``...)."""
        for entry in self.qmp("query-block"):
            if device in (entry.get("device"), entry.get("qdev")):
                return entry
        raise AssertionError(f"no block device {device!r} in query-block")

    def insert_disc(self, iso: Path, drive: str = "cdrom0") -> None:
        """Put a disc in the (empty) CD drive and close the tray, as a hand would."""
        self.qmp(
            "blockdev-change-medium",
            id=drive,
            filename=str(iso),
            format="raw",
            **{"read-only-mode": "read-only"},
        )

    def plug_usb_stick(self, image: Path, name: str = "stick0") -> None:
        """Plug a USB mass-storage stick holding ``image`` into the xHCI controller."""
        self.qmp(
            "blockdev-add",
            **{"node-name": name, "driver": "raw", "read-only": False},
            file={"driver": "file", "filename": str(image)},
        )
        self.qmp("device_add", driver="usb-storage", bus="xhci.0", drive=name, id=name)

    def unplug_usb_stick(self, name: str = "stick0", timeout: float = 30.0) -> None:
        """Pull the stick out (no warning to the guest, as a hand would), then
        drop its block node so the name can be plugged again."""
        self.qmp("device_del", id=name)
        self.wait_event("DEVICE_DELETED", timeout, device=name)
        self.qmp("blockdev-del", **{"node-name": name})

    def wait_event(self, event: str, timeout: float = 30.0, **data) -> dict:
        """The first QMP event ``event`` whose data has ``data`` (consumed)."""
        deadline = time.monotonic() + timeout

        def match(e):
            return e.get("event") == event and all(
                e.get("data", {}).get(k) == v for k, v in data.items()
            )

        while True:
            for e in self.qmp_events:
                if match(e):
                    self.qmp_events.remove(e)
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no QMP event {event} {data} in {timeout:.0f}s")
            answer = self._qmp_message(left)
            if "event" in answer:
                self.qmp_events.append(answer)

    def _drop(self) -> None:
        """Close the console connection (qemu serves one client at a time)."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(self.sock_path))
            # No prompt, no echo: the output is only what commands print.
            s.sendall(
                b"PS1=; PS2=; export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat TERM=dumb; "
                b"stty -echo 2>/dev/null\n"
            )
            self._sock = s
            self._buf = b""
        return self._sock

    def sh(self, command: str, timeout: float = 60.0, check: bool = False) -> tuple[int, str]:
        """Run ``command`` in the VM's debug shell; (exit status, output)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"qemu exited {self.proc.returncode}: see {self.log_path}")
        tag = uuid.uuid4().hex
        s = self._connect()
        # A subshell so `exit` or `set -e` in a command cannot end the shell.
        # The tag is split in the command so a terminal echo of it cannot match.
        s.sendall(
            f"( {command} ) </dev/null 2>&1; rc=$?; echo; echo {tag[:16]}''{tag[16:]}:$rc\n".encode()
        )
        deadline = time.monotonic() + timeout
        marker = f"{tag}:".encode()
        while True:
            i = self._buf.find(marker)
            if i >= 0:
                j = self._buf.find(b"\n", i)
                if j >= 0:
                    out = self._buf[:i].decode(errors="replace").replace("\r", "")
                    rc = int(self._buf[i + len(marker) : j].strip() or b"255")
                    self._buf = self._buf[j + 1 :]
                    return rc, out[:-1] if out.endswith("\n") else out
            left = deadline - time.monotonic()
            if left <= 0:
                # Keep the connection: a late answer carries its own tag.
                raise AssertionError(f"`{command}` gave no answer in {timeout:.0f}s")
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                self._drop()
                raise AssertionError("the VM's debug console closed")
            self._buf += chunk

    def panel_screens(self) -> list[str]:
        """The screens the front panel drew on the serial console, oldest first.

        The console driver draws on every console of the kernel command line
        (console=tty1 console=ttyS0); ttyS0 is the ``-serial`` file, so this is
        the box's console as a terminal on that port shows it: each screen
        after its clear sequence, only whole ones (ending with the status
        line's last line, "Updated: ...").
        """
        text = self.log_path.read_bytes().decode(errors="replace").replace("\r", "")
        screens = text.split("\x1b[H\x1b[2J")[1:]
        return [s for s in screens if re.search(r"^Updated: .*\)\n", s, re.MULTILINE)]

    def boot(self, timeout: float = BOOT_TIMEOUT) -> QemuBox:
        """Start the VM and wait until systemd finished booting (debug shell answering)."""
        self.start()
        self.wait_shell(timeout)
        self.wait_booted(timeout)
        return self

    def wait_shell(self, timeout: float = 180.0) -> None:
        """Wait until the debug shell answers (the VM has booted far enough)."""

        def answers():
            if self.proc is not None and self.proc.poll() is not None:
                out = (self.workdir / "qemu.out").read_text(errors="replace").strip()
                raise RuntimeError(f"qemu exited {self.proc.returncode}: {out[-500:]}")
            try:
                return self.sh("echo up", timeout=10)[1].strip().endswith("up")
            except OSError:
                self._drop()
                return False
            except AssertionError:
                return False

        wait_for(answers, timeout, f"the VM's debug shell (serial log: {self.log_path})", 1.0)

    def stop(self, timeout: float = 90.0) -> None:
        """Clean power-off from inside, as a person pressing the power button."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            s = self._connect()
            s.sendall(b"systemctl poweroff\n")
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._drop()
        self._qmp_close()
        self._out.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._drop()
        self._qmp_close()
