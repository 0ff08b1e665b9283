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


class QRSCP:
    """DCMTK dcmqrscp: a query/retrieve archive in ``folder`` on a free port.

    ``destinations`` ({AE title: port}, on 127.0.0.1) are the move
    destinations it knows; ``restart`` changes them and keeps what it holds.
    It forks a child per association (its single-process mode crashes after
    the first one in DCMTK 3.6.7).
    """

    def __init__(self, folder: Path, title: str = "DCMQR", destinations: dict | None = None):
        self.dir = folder
        (folder / "db").mkdir(parents=True)
        self.title = title
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.restart(destinations or {})

    def restart(self, destinations: dict) -> None:
        self.stop()
        hosts = "\n".join(
            f"dest{n} = ({aet}, 127.0.0.1, {port})"
            for n, (aet, port) in enumerate(destinations.items())
        )
        cfg = self.dir / "dcmqrscp.cfg"
        cfg.write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{self.title} {self.dir / 'db'} RW (200, 1024mb) ANY\nAETable END\n"
        )
        self.log = open(self.dir / "dcmqrscp.log", "ab")
        self.proc = subprocess.Popen(
            ["dcmqrscp", "-c", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT, env=DCMTK_ENV
        )
        poll(lambda: listening(self.port), 10, what="dcmqrscp to listen")

    def store(self, *files: Path) -> None:
        """Send files in with DCMTK storescu."""
        proc = subprocess.run(
            ["storescu", "-aet", "STORESCU", "-aec", self.title, "127.0.0.1", str(self.port),
             *map(str, files)],
            capture_output=True, text=True, timeout=60, env=DCMTK_ENV,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"storescu into dcmqrscp failed: {proc.stderr.strip()}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(10)
            self.log.close()
            self.proc = None
            # A child still serving an association holds the listening socket.
            poll(lambda: not listening(self.port), 20, what="dcmqrscp's children to end")


class PrintSCP:
    """DCMTK dcmprscp as the printer IHEFULL, on a free port, from a copy of the stock
    /etc/dcmtk/dcmpstat.cfg whose spool, database and log folders are under ``folder``.
    What it prints it writes to ``database/`` as Stored Print and Hardcopy Grayscale
    Image objects (one per film, one per image box)."""

    STOCK = Path("/etc/dcmtk/dcmpstat.cfg")

    def __init__(self, folder: Path, title: str = "IHEFULL", *, ini: Path | None = None) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True)
        self.title = title
        self.port = free_port()
        self.database = self.dir / "database"
        for sub in ("database", "spool", "log", "lut", "reports"):
            (self.dir / sub).mkdir()
        self.cfg = self.dir / "dcmpstat.cfg"
        self.cfg.write_text(self._config(self.STOCK.read_text(encoding="latin-1")))
        self.log = open(self.dir / "dcmprscp.out", "wb")
        self.proc = subprocess.Popen(
            ["dcmprscp", "-c", str(self.cfg), "-p", "IHEFULL"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=DCMTK_ENV,
            cwd=self.dir,
        )
        if ini is not None:
            cli(ini, "ae", "add", title, "--host", "127.0.0.1", "--port", str(self.port))
        poll(lambda: listening(self.port), 10, what="dcmprscp to listen")

    def _config(self, text: str) -> str:
        """The stock file with our port and folders: each ``Directory`` of a section, the
        log folder, and the IHEFULL printer's Port and Aetitle."""
        out, section = [], ""
        for line in text.splitlines():
            key = line.split("=", 1)[0].strip().lower() if "=" in line else ""
            if line.strip().startswith("["):
                section = line.strip().strip("[]").upper()
            elif section == "IHEFULL" and key == "port":
                line = f"Port = {self.port}"
            elif section == "IHEFULL" and key == "aetitle":
                line = f"Aetitle = {self.title}"
            elif key == "directory" and section in ("PRINT", "DATABASE", "LUT", "REPORT"):
                sub = {"PRINT": "spool", "LUT": "lut", "REPORT": "reports"}.get(section, "database")
                line = f"Directory = {self.dir / sub}"
            elif key == "logdirectory":
                line = f"LogDirectory = {self.dir / 'log'}"
            out.append(line)
        return "\n".join(out) + "\n"

    def objects(self, sop_class: str) -> list:
        """The objects of one SOP class dcmprscp wrote to its database folder."""
        import pydicom

        found = []
        for p in sorted(self.database.rglob("*")):
            if p.is_file() and p.suffix.lower() == ".dcm":
                ds = pydicom.dcmread(p)
                if ds.SOPClassUID == sop_class:
                    found.append(ds)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class WorklistSCP:
    """DCMTK wlmscpfs answering Modality Worklist C-FINDs from ``.wl`` files in
    ``folder/<title>/`` (its data-file-path layout); with ``ini``, in that box's AE
    table marked as a worklist SCP."""

    def __init__(self, folder: Path, title: str = "RISWL", *, ini: Path | None = None) -> None:
        self.title = title
        self.port = free_port()
        self.dir = folder / title
        self.dir.mkdir(parents=True)
        (self.dir / "lockfile").touch()  # wlmscpfs refuses a folder without one
        self.log = open(folder / "wlmscpfs.out", "wb")
        self.proc = subprocess.Popen(
            ["wlmscpfs", "-dfp", str(folder), "-dfr", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=DCMTK_ENV,
        )
        if ini is not None:
            cli(ini, "ae", "add", title, "--host", "127.0.0.1", "--port", str(self.port),
                "--worklist")  # fmt: skip
        poll(lambda: listening(self.port), 10, what="wlmscpfs to listen")

    def write(self, name: str, ds) -> Path:  # noqa: ANN001 - a pydicom Dataset
        """One worklist entry as the ``.wl`` file wlmscpfs reads (a DICOM file)."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.StudyInstanceUID
        path = self.dir / f"{name}.wl"
        ds.save_as(path, enforce_file_format=True)
        return path

    def remove(self, name: str) -> None:
        (self.dir / f"{name}.wl").unlink()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
