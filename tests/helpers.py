"""Shared test tools: free ports, polling with a deadline, the real daemon, DCMTK."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pacsbox import config

VENV_BIN = Path(sys.executable).parent
PACSBOX = str(VENV_BIN / "pacsbox")
# pynetdicom installs its own storescu/findscu/movescu/getscu/storescp into the
# venv's bin: keep that folder off the PATH so the peers are always DCMTK's.
DCMTK_ENV = {
    **os.environ,
    "TCP_NODELAY": "1",
    "PATH": os.pathsep.join(
        p
        for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if p and Path(p).resolve() != VENV_BIN.resolve()
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(
    check: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""
):
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def run_jobs(cfg: config.Config, archive) -> list[str]:  # noqa: ANN001 - an Archive
    """What the daemon's runner does, here in this thread: run the queue's due jobs until
    none is left (the web app in a test has no daemon). The states they ended in."""
    from pacsbox.db import queue
    from pacsbox.db.models import utcnow
    from pacsbox.outbound.kinds import HANDLERS
    from pacsbox.outbound.runner import Runner

    runner = Runner(cfg, HANDLERS, archive=archive)
    states = []
    while (job := queue.claim(runner.name, utcnow(), runner.limit)) is not None:
        states.append(runner.run_one(job))
    return states


def write_config(base: Path, **settings: object) -> Path:
    """An INI under ``base`` (DataDirectory = base) with ``settings`` overriding defaults."""
    base.mkdir(parents=True, exist_ok=True)
    overrides = {"DataDirectory": str(base), "WebPort": "0", "HL7PortNumber": "0"}
    overrides.update({k: str(v) for k, v in settings.items()})
    ini = base / "pacsbox.ini"
    ini.write_text(config.default_ini(overrides), encoding="utf-8")
    return ini


def add_aes(ini: Path, *titles: str, host: str = "") -> None:
    """AEs into a box's table in one go, as ``pacsbox ae add TITLE --host H`` would
    (a command per AE costs a process start and a migration check each)."""
    from pacsbox.archive import Archive
    from pacsbox.db import aes

    archive = Archive(config.load(ini))
    try:
        for title in titles:
            aes.ae_upsert(title, hostname=host)
    finally:
        archive.close()


def cli(ini: Path, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [PACSBOX, *args, "--config", str(ini)], capture_output=True, text=True, timeout=300, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"pacsbox {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


class Server:
    """A real ``pacsbox serve`` in a subprocess on a free port."""

    def __init__(self, ini: Path, env: dict | None = None, cwd: Path | None = None) -> None:
        self.ini = ini
        self.cwd = cwd
        self.cfg = config.load(ini)
        self.env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = Path(self.cfg.DataDirectory) / "serve.out"

    @property
    def ae_title(self) -> str:
        return self.cfg.ApplicationEntityTitle

    def start(self, timeout: float = 30.0) -> Server:
        status = self.cfg.status_path
        if status.exists():
            status.unlink()
        self._out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PACSBOX, "serve", "--config", str(self.ini), "--port", "0"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"pacsbox exited {self.proc.returncode}: {self.output()}")
            try:
                snap = json.loads(status.read_text())
            except (OSError, ValueError):
                return None
            if snap.get("state") == "ok" and snap.get("pid") == self.proc.pid:
                return snap.get("port")
            return None

        self.port = poll(ready, timeout, what="pacsbox to become ready")
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._out.close()
            self.proc = None


def move_study(server: Server, study: str, destination: str = "WORKSTATION") -> None:
    """C-MOVE a study from the running box to ``destination`` with DCMTK movescu."""
    r = dcmtk(
        "movescu", "-S", "-aet", "FINDSCU", "-aec", server.ae_title, "-aem", destination,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def require_tools(*tools: str) -> None:
    """Skip the calling test when a tool it drives is missing, naming it; under
    ``make test`` (PACSBOX_REQUIRE_TOOLS=1, it installs them) that is a failure."""
    import pytest

    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    why = f"needs {', '.join(missing)} (make test installs it)"
    if os.environ.get("PACSBOX_REQUIRE_TOOLS") == "1":
        pytest.fail(why)
    pytest.skip(why)


def dcmtk(
    tool: str, *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess:
    require_tools(tool)
    proc = subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc
