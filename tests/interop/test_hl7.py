"""HL7 v2 over MLLP with a real client: python-hl7's ``mllp_send`` (Debian python3-hl7)
sends orders, ADT updates and merges to a running pacsbox; the ACKs, the worklist,
the files a C-MOVE delivers to DCMTK storescp and a rebuild show the outcome (INT-1,
DATA-3). Malformed traffic gets AR or a closed connection and the listener serves on."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from pacsbox import config
from pacsbox.archive import Archive
from tests.helpers import (
    DCMTK_ENV,
    Server,
    cli,
    dcmtk,
    free_port,
    move_study,
    poll,
    require_tools,
    write_config,
)
from tests.integration.web.conftest import make_dicom
from tests.peers import StoreSCP

MSH = "MSH|^~\\&|{app}|HOSP|PACSBOX|CLINIC|20261204101500||{kind}|{ctl}|P|2.5||||||{cs}"


def _order(ctl: str, control: str, placer: str, pid: str, name: str, accession: str) -> str:
    obr = ["OBR", "1", placer, "", "CTH^CT head plain^L", *[""] * 13, accession, "RP" + placer,
           "SPS" + placer, "", "", "", "CT", "", "", "^^^202612050930"]  # fmt: skip
    return "\r".join([
        MSH.format(app="RIS", kind="ORM^O01", ctl=ctl, cs=""),
        f"PID|1||{pid}^^^HOSP||{name}||19700215|M",
        f"ORC|{control}|{placer}",
        "|".join(obr),
    ])  # fmt: skip


def _adt(ctl: str, kind: str, pid: str, name: str, *, cs: str = "", mrg: str = "") -> str:
    segments = [MSH.format(app="RIS", kind=kind, ctl=ctl, cs=cs), f"PID|1||{pid}^^^HOSP||{name}"]
    if mrg:
        segments.append(f"MRG|{mrg}^^^HOSP")
    return "\r".join(segments)


def send(port: int, *messages: str | bytes) -> list[str]:
    """mllp_send the messages (one connection); the MSA segment of each ACK it prints."""
    require_tools("mllp_send")
    data = b"".join((m if isinstance(m, bytes) else m.encode()) + b"\x1c" for m in messages)
    with tempfile.NamedTemporaryFile(suffix=".hl7") as f:  # its stdin mode is broken on py3
        f.write(data)
        f.flush()
        proc = subprocess.run(
            ["mllp_send", "-p", str(port), "-f", f.name, "127.0.0.1"],
            capture_output=True, timeout=60, env=DCMTK_ENV,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    acks = [a for a in proc.stdout.split(b"\x1c") if b"MSA|" in a]
    return [next(s for s in a.decode("utf-8").split("\r") if s.startswith("MSA|")) for a in acks]


def rows(cfg: config.Config, sql: str, *args: object) -> list[tuple]:
    """Read the daemon's index the way an operator's sqlite3 would, read-only."""
    path = cfg.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql, args).fetchall()


@pytest.fixture
def box(tmp_path):
    port = free_port()
    ini = write_config(
        tmp_path / "box", HL7PortNumber=port, HL7AllowedSenders="RIS", HL7StationMap="CT=CT01"
    )
    cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    return ini, port


def _store(ini: Path, **kw: str) -> str:
    archive = Archive(config.load(ini))
    try:
        return archive.store(make_dicom(**kw), source="test").sop_instance_uid
    finally:
        archive.close()


def test_orders_create_update_and_cancel_worklist_items(box):
    ini, port = box
    cfg = config.load(ini)
    server = Server(ini).start()
    try:
        acks = send(
            port,
            _order("C1", "NW", "PL1", "P1", "DOE^JOHN", "ACC1"),
            _order("C2", "NW", "PL2", "P2", "ROE^JANE", "ACC2"),
            _order("C3", "NW", "PL2", "P2", "ROE^JANE^M", "ACC2"),  # the NW again: an update
            _order("C4", "CA", "PL1", "P1", "DOE^JOHN", "ACC1"),
            _order("C5", "CA", "PL9", "P9", "NOBODY", "ACC9"),
        )
        assert [a.split("|")[1:3] for a in acks] == [
            ["AA", "C1"], ["AA", "C2"], ["AA", "C3"], ["AA", "C4"], ["AE", "C5"],
        ]  # fmt: skip
        assert "created" in acks[0] and "updated" in acks[2] and "removed" in acks[3]
        assert "not in the worklist" in acks[4]
        items = rows(
            cfg,
            "SELECT placer_order, patient_id, patient_name, accession_number, modality, "
            "station_ae, start_date, start_time, requested_procedure_description, status, "
            "source, study_instance_uid FROM worklist_item",
        )
        (item,) = items
        assert item[:11] == (
            "PL2", "P2", "ROE^JANE^M", "ACC2", "CT", "CT01", "20261205", "0930",
            "CT head plain", "scheduled", "hl7:RIS",
        )  # fmt: skip
        assert item[11].startswith("2.25.")
        journal = rows(cfg, "SELECT action, user, target, detail FROM journal WHERE action "
                            "LIKE 'hl7%' ORDER BY id")  # fmt: skip
        assert [(j[0], j[2], j[3][:2]) for j in journal] == [
            ("hl7 ORM^O01", c, code) for c, code in
            (("C1", "AA"), ("C2", "AA"), ("C3", "AA"), ("C4", "AA"), ("C5", "AE"))
        ]  # fmt: skip
    finally:
        server.stop()
    assert "DOE^JOHN" not in server.output() and "ROE^JANE" not in server.output()


def test_an_a08_reaches_the_files_a_c_move_delivers_and_the_worklist(box, tmp_path):
    ini, port = box
    cfg = config.load(ini)
    study = generate_uid()
    sops = {_store(ini, study_uid=study, patient_id="P8", patient_name="DOE^JOHN")
            for _ in range(2)}  # fmt: skip
    scp = StoreSCP(tmp_path / "received", "WORKSTATION", ini=ini)
    server = Server(ini).start()
    try:
        assert send(port, _order("O1", "NW", "PL8", "P8", "DOE^JOHN", "ACC8"))[0].startswith(
            "MSA|AA|O1"
        )
        # The RIS corrects the name, in Latin-1 as MSH-18 says.
        a08 = _adt("A1", "ADT^A08", "P8", "M\u00dcLLER^J\u00d6RG", cs="8859/1").encode("latin-1")
        (ack,) = send(port, a08)
        assert ack.startswith("MSA|AA|A1|") and "edit job" in ack, ack
        poll(
            lambda: (
                rows(cfg, "SELECT patient_name FROM patient WHERE patient_id = 'P8'")
                == [("M\u00dcLLER^J\u00d6RG",)]
            ),
            60,
            what="the edit job",
        )
        assert rows(cfg, "SELECT patient_name FROM worklist_item") == [("M\u00dcLLER^J\u00d6RG",)]
        move_study(server, study)
        files = poll(lambda: len(scp.files()) == 2 and scp.files(), 30, what="2 images")
        journal = rows(cfg, "SELECT user, detail FROM journal WHERE action = 'edit'")
    finally:
        server.stop()
        scp.stop()
    for f in files:
        dump = dcmtk("dcmdump", "+U8", "+P", "0010,0010", "+P", "0008,0005", str(f), check=True)
        assert "[M\u00dcLLER^J\u00d6RG]" in dump.stdout and "ISO_IR 192" in dump.stdout, dump
    assert {pydicom.dcmread(f).SOPInstanceUID for f in files} == sops
    ((user, detail),) = journal
    assert user == "hl7:RIS" and "'DOE^JOHN' -> 'M\u00dcLLER^J\u00d6RG'" in detail
    assert "DOE^JOHN" not in server.output() and "LLER^J" not in server.output()


def test_an_a40_merge_moves_studies_and_worklist_items_and_a_rebuild_keeps_it(box, tmp_path):
    ini, port = box
    cfg = config.load(ini)
    old_study, new_study = generate_uid(), generate_uid()
    _store(ini, study_uid=old_study, patient_id="OLD1", patient_name="SMITH^J")
    _store(ini, study_uid=new_study, patient_id="NEW1", patient_name="SMITH^JOHN")
    server = Server(ini).start()
    try:
        assert send(port, _order("O2", "NW", "PL40", "OLD1", "SMITH^J", "ACC40"))[0].startswith(
            "MSA|AA|"
        )
        (ack,) = send(port, _adt("M1", "ADT^A40", "NEW1", "SMITH^JOHN", mrg="OLD1"))
        assert ack.startswith("MSA|AA|M1|"), ack
        poll(
            lambda: not rows(cfg, "SELECT id FROM patient WHERE patient_id = 'OLD1'"),
            60,
            what="the merge job",
        )
        assert rows(cfg, "SELECT patient_id, patient_name FROM worklist_item") == [
            ("NEW1", "SMITH^JOHN")
        ]
        rsp = tmp_path / "rsp"
        rsp.mkdir()
        dcmtk(
            "findscu", "-S", "-aet", "FINDSCU", "-aec", server.ae_title, "-X", "-od", str(rsp),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=NEW1", "-k", "StudyInstanceUID",
            "-k", "PatientName", "127.0.0.1", str(server.port), check=True,
        )  # fmt: skip
    finally:
        server.stop()
    found = [pydicom.dcmread(p) for p in rsp.glob("rsp*.dcm")]
    assert sorted(d.StudyInstanceUID for d in found) == sorted([old_study, new_study])
    assert {str(d.PatientName) for d in found} == {"SMITH^JOHN"}
    cli(ini, "rebuild-index")
    assert rows(cfg, "SELECT patient_id, patient_name, num_studies FROM patient") == [
        ("NEW1", "SMITH^JOHN", 2)
    ]
    assert cli(ini, "check").returncode == 0


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection; whatever comes back before the box closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the box closed it mid-send (the oversized frame)
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def test_malformed_traffic_is_refused_and_the_listener_serves_on(box):
    ini, port = box
    server = Server(ini).start()
    try:
        good = _adt("G1", "ADT^A08", "NOPE", "DOE^JOHN")
        acks = send(
            port,
            "PID|1||P1||DOE^JOHN",  # no MSH
            "MSHA1234RIS",  # field separator a letter
            "MSH|^^^^|RIS|HOSP|PACSBOX",  # encoding characters not distinct
            MSH.format(app="RIS", kind="ZZZ^Z01", ctl="U1", cs=""),  # unknown type
            MSH.format(app="RIS", kind="ADT^A99", ctl="U2", cs="") + "\rPID|1||P1",
            MSH.format(app="EVIL", kind="ADT^A08", ctl="U3", cs="") + "\rPID|1||P1",
            MSH.format(app="RIS", kind="ADT^A08", ctl="U4", cs="") + "\rPID|1||",
            MSH.format(app="RIS", kind="ADT^A08", ctl="U5", cs="KLINGON") + "\rPID|1||P1",
            good,
        )
        codes = [a.split("|")[1:3] for a in acks]
        assert codes == [
            ["AR", ""], ["AR", ""], ["AR", ""], ["AR", "U1"], ["AR", "U2"], ["AR", "U3"],
            ["AR", "U4"], ["AR", "U5"], ["AA", "G1"],
        ], acks  # fmt: skip
        assert "not allowed" in acks[5] and "PID-3" in acks[6]
        # Frames the client library cannot even produce: cut short, oversized, unframed.
        assert _raw(port, b"\x0b" + good.encode()[:30]) == b""
        assert _raw(port, b"\x0b" + b"MSH|" + b"X" * (10 << 20) + b"\x1c\r") == b""
        assert _raw(port, b"garbage before a frame\x0b" + good.encode() + b"\x1c\r") == b""
        assert send(port, good)[0].startswith("MSA|AA|G1")
        assert server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
    assert "frame over" in server.output() and "inside a frame" in server.output()
