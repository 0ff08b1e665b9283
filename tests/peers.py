"""DICOM peers the tests start: DCMTK storescp on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.helpers import DCMTK_ENV, cli, free_port, poll


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class StoreSCP:
    """storescp writing to ``folder``; with ``ini``, registered in that box's AE table."""

    def __init__(self, folder: Path, title: str, *options: str, ini: Path | None = None) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True)
        self.title = title
        self.port = free_port()
        self.log_path = self.dir.with_suffix(".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["storescp", "-aet", title, "-od", str(self.dir), *options, str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=DCMTK_ENV,
        )
        if ini is not None:
            cli(ini, "ae", "add", title, "--host", "127.0.0.1", "--port", str(self.port))
        poll(lambda: listening(self.port), 10, what="storescp to listen")

    def files(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.is_file())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
