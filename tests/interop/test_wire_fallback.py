"""When pynetdicom's internals are not what wire expects, pynetdicom carries everything.

The daemon runs with a ``sitecustomize`` that makes pynetdicom look like a
later release might: a private method wire relies on is gone from
``DULServiceProvider``, while pynetdicom's own code still reaches it under
another name. What a user checks: one log line says what differs and which
pynetdicom it is, and storescu, findscu, movescu and getscu all still work,
carried by pynetdicom's own paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.helpers import Server, cli, dcmtk, poll, write_config
from tests.peers import StoreSCP
from tests.synth import make_instance

HIDE = """
import pynetdicom.dul

_cls = pynetdicom.dul.DULServiceProvider
_moved = _cls.__dict__[{name!r}]
delattr(_cls, {name!r})


def __getattr__(self, name):
    if name == {name!r}:
        return _moved.__get__(self, type(self))
    raise AttributeError(name)


_cls.__getattr__ = __getattr__
"""

WARNING = "differs from what pacsbox was built for"


@pytest.fixture
def storescp(tmp_path):
    scp = StoreSCP(tmp_path / "storescp", "STORESCP")
    yield scp.port, scp.dir
    scp.stop()


@pytest.mark.parametrize("hidden", ["_decode_pdu", "_is_transport_event"])
def test_a_private_name_gone_turns_the_fast_paths_off(tmp_path, storescp, hidden):
    scp_port, scp_dir = storescp
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE.format(name=hidden))
    ini = write_config(tmp_path / "box", LogLevel="debug", SyncWrites="no")
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    cli(ini, "ae", "add", "STORESCP", "--host", "127.0.0.1", "--port", str(scp_port))
    study = generate_uid()
    files = []
    for k in range(3):
        path = tmp_path / f"{k}.dcm"
        path.write_bytes(
            make_instance(patient_id="FALLBACK1", study_uid=study, instance_number=k + 1,
                          pixel_seed=k, rows=16, columns=16)
        )  # fmt: skip
        files.append(path)
    sent = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p).PixelData for p in files}
    server = Server(ini, env={"PYTHONPATH": str(hide)}).start()
    try:
        aec = ["-aec", server.ae_title, "127.0.0.1", str(server.port)]
        r = dcmtk("storescu", "-aet", "STORESCU", *aec, *map(str, files))
        assert r.returncode == 0, r.stderr

        out = server.output()
        lines = [line for line in out.splitlines() if WARNING in line]
        assert len(lines) == 1, lines  # the daemon says it; its worker does not repeat it
        assert f"pynetdicom {pynetdicom_version()}" in lines[0]
        assert f"DULServiceProvider.{hidden}" in lines[0]
        assert "Received Store Request" in out  # pynetdicom's own C-STORE service took them

        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
        r = dcmtk("findscu", "-v", "-S", "-aet", "FINDSCU", *aec, *keys, "-k", "PatientID")
        text = r.stdout + r.stderr
        assert r.returncode == 0, text
        assert len(re.findall(r"Find Response: \d+ \(Pending\)", text)) == 1, text
        assert "FALLBACK1" in text

        r = dcmtk("movescu", "-S", "-aet", "FINDSCU", "-aem", "STORESCP", *aec, *keys)
        assert r.returncode == 0, r.stdout + r.stderr
        moved = poll(lambda: _received(scp_dir, 3), 20, what="the moved images")
        assert moved == sent
        assert "sent through pynetdicom's retrieve loop" in server.output()

        got = tmp_path / "getscu"
        got.mkdir()
        r = dcmtk("getscu", "-S", "-aet", "FINDSCU", "-od", str(got), *aec, *keys)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _received(got, 3) == sent
    finally:
        server.stop()


def pynetdicom_version() -> str:
    import pynetdicom

    return pynetdicom.__version__


def _received(folder: Path, n: int) -> dict[str, bytes] | None:
    paths = [p for p in folder.iterdir() if p.is_file()]
    if len(paths) < n:
        return None
    return {str(ds.SOPInstanceUID): ds.PixelData for ds in map(pydicom.dcmread, paths)}
