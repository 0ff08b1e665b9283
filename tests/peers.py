"""DICOM peers the tests start on free loopback ports: DCMTK storescp and Orthanc."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
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


class Orthanc:
    """An Orthanc started with its own configuration on free loopback ports."""

    def __init__(
        self, tmp: Path, pacsbox_port: int, aet: str = "ORTHANC", **settings: object
    ) -> None:
        """``settings`` are more or other keys of Orthanc's JSON configuration."""
        self.http = free_port()
        self.dicom = free_port()
        self.aet = aet
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = {
            "Name": "pacsbox-test",
            "StorageDirectory": str(tmp / "storage"),
            "IndexDirectory": str(tmp / "storage"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {"pacsbox": ["PACSBOX", "127.0.0.1", pacsbox_port]},
            "Plugins": [],
            "StableAge": 1,
            **settings,
        }
        (tmp / "orthanc.json").write_text(json.dumps(cfg))
        self.log = open(tmp / "orthanc.log", "wb")
        self.proc = subprocess.Popen(
            ["Orthanc", str(tmp / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT
        )
        poll(self._ready, 30, what="Orthanc to answer")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("Orthanc exited; see orthanc.log")
        try:
            return self.get("/system")
        except OSError:
            return None

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as r:
            data = r.read()
        return data if path.endswith("/file") else json.loads(data)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
