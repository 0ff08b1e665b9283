"""C-MOVE and C-GET against a running pacsbox with DCMTK movescu/getscu/storescp and Orthanc.

What a user checks: the images arrive, their data sets are byte-identical to
what was stored (or pixel-identical after a conversion to Implicit VR LE that
the destination forced), an unknown destination is refused with A801, a
destination that refuses a SOP class gets B000 with the right counts, and a
cancelled move stops.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian

from tests.helpers import DCMTK_ENV, Server, cli, free_port, poll
from tests.interop.test_find import (
    Box,
    build,
    findscu,
    instances,
    start_box,
    store_folder,
    studies,
)
from tests.peers import Orthanc, StoreSCP
from tests.postgres import DATABASES, index_settings

COMPRESSED = ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"]
BIG_ENDIAN = "MR_small_bigendian.dcm"
LARGE = 300  # instances of the study a cancel interrupts


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part-10 file: what the archive must send unchanged."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    (group_len,) = struct.unpack_from("<I", data, 140)
    return data[144 + group_len :]


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


@dataclass
class Env:
    server: Server
    ini: Path
    tmp: Path
    patients: list
    originals: dict  # SOP Instance UID -> the file that was stored
    large_study: str
    runs: int = 0


@pytest.fixture(scope="module", params=DATABASES)
def env(request, tmp_path_factory):
    """The Q/R box, with its index in SQLite and in a real PostgreSQL."""
    tmp = tmp_path_factory.mktemp("qr")
    patients = build(tmp / "corpus")
    # A study with a private SOP class (that storescp refuses); storescu does
    # not propose unknown classes, so it enters through ``pacsbox import``.
    patients += build(
        tmp / "private",
        [
            (
                "PID777",
                "PRIVATE^CLASS",
                "19990101",
                "F",
                "",
                [("20240401", "100000", "ACC7001", [("CT", 2), ("XX", 1)])],
            )
        ],
    )
    large = build(
        tmp / "large",
        [
            (
                "PID888",
                "LARGE^STUDY",
                "19990101",
                "M",
                "",
                [
                    ("20240501", "100000", "ACC8001", [("CT", LARGE)]),
                ],
            )
        ],
        rows=4,
        cols=4,
    )
    comp = tmp / "compressed"
    comp.mkdir()
    for name in COMPRESSED:
        shutil.copy(get_testdata_file(name, download=False), comp / name)
    big = tmp / "bigendian"
    big.mkdir()
    shutil.copy(get_testdata_file(BIG_ENDIAN, download=False), big / BIG_ENDIAN)
    ini, srv = start_box(tmp, **index_settings(request, request.param))
    try:
        for folder in ("corpus", "large"):
            store_folder(srv, tmp / folder)
        for folder in ("private", "compressed", "bigendian"):
            cli(ini, "import", str(tmp / folder))
        originals = {i.uid: i.path for _, _, _, i in instances(patients)}
        originals.update({sop_uid(p): p for p in [*comp.iterdir(), *big.iterdir()]})
        yield Env(srv, ini, tmp, patients, originals, large[0].studies[0].uid)
    finally:
        srv.stop()


@pytest.fixture
def storescp(env):
    started = []

    def start(title: str = "STORESCP", *options: str) -> StoreSCP:
        env.runs += 1
        scp = StoreSCP(env.tmp / f"{title.lower()}{env.runs}", title, *options, ini=env.ini)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


def run(tool: str, env: Env, model: str, level: str, *keys: str, extra: tuple = (), final=True):
    args = [tool, "-v", f"-{model}", "-aet", "FINDSCU", "-aec", env.server.ae_title, *extra]
    args += ["127.0.0.1", str(env.server.port), "-k", f"QueryRetrieveLevel={level}"]
    for k in keys:
        args += ["-k", k]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=DCMTK_ENV)
    text = proc.stdout + proc.stderr
    return (last_status(text) if final else ""), text


def last_status(output: str) -> str:
    """movescu prints "Received Final Move Response (X)", getscu "Received C-GET Response (X)"."""
    found = [
        line.split("(", 1)[1].rsplit(")", 1)[0]
        for line in output.splitlines()
        if ("Received Final" in line or "Received C-GET Response" in line) and "(" in line
    ]
    found = [f for f in found if f != "Pending"]
    if not found:
        raise AssertionError(f"no final response in:\n{output}")
    return found[-1]


def counts_in(output: str) -> dict[str, int]:
    """Sub-operation counts of the last response (getscu -v, or movescu -d's message dump)."""
    out = {}
    for line in output.splitlines():
        for what in ("Remaining", "Completed", "Failed", "Warning"):
            if f"{what} Suboperations" in line:
                value = line.rsplit(":", 1)[1].strip()
                out[what.lower()] = int(value) if value.isdigit() else 0
    return out


def final_dimse_status(output: str) -> str:
    """movescu -d: the DIMSE Status line of the last message ("0xb000: Warning...")."""
    last = [x for x in output.splitlines() if "DIMSE Status" in x][-1]
    return last.split("DIMSE Status", 1)[1].split(":", 1)[1].strip()


def assert_identical(env: Env, files: list[Path]) -> None:
    assert files
    for f in files:
        original = env.originals[sop_uid(f)]
        assert dataset_bytes(f) == dataset_bytes(original), f"{f.name} differs from what was stored"


# -- C-MOVE to DCMTK storescp -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "level", "key"),
    [
        ("S", "STUDY", "study"),
        ("P", "PATIENT", "patient"),
        ("O", "STUDY", "study"),
        ("S", "SERIES", "series"),
    ],
)
def test_move_to_storescp_is_byte_identical(env, storescp, model, level, key):
    p, st = next((p, s) for p, s in studies(env.patients) if p.pid == "PID003")
    keys = {
        "study": [f"StudyInstanceUID={st.uid}"],
        "patient": [f"PatientID={p.pid}"],
        "series": [f"SeriesInstanceUID={st.series[0].uid}"],
    }[key]
    if model == "O":
        keys = [f"PatientID={p.pid}", *keys]
    want = {
        "study": {i.uid for se in st.series for i in se.instances},
        "patient": {i.uid for s in p.studies for se in s.series for i in se.instances},
        "series": {i.uid for i in st.series[0].instances},
    }[key]
    scp = storescp()
    status, out = run("movescu", env, model, level, *keys, extra=("-aem", "STORESCP"))
    assert status == "Success", out
    files = scp.files()
    assert {sop_uid(f) for f in files} == want
    assert_identical(env, files)
    assert "C-MOVE from FINDSCU" in env.server.output()


def test_move_unknown_destination_is_a801(env):
    status, _ = run(
        "movescu", env, "S", "STUDY", "StudyInstanceUID=1.2.3", extra=("-aem", "NOBODY")
    )
    assert status == "Refused: MoveDestinationUnknown"


def test_move_without_unique_key_is_a900(env, storescp):
    storescp()
    status, _ = run("movescu", env, "S", "STUDY", "PatientName=*", extra=("-aem", "STORESCP"))
    assert status == "Error: DataSetDoesNotMatchSOPClass"


def test_refused_sop_class_gives_b000_with_counts(env, storescp):
    """storescp (not promiscuous) refuses the private SOP class: 2 sent, 1 failed."""
    _, st = next((p, s) for p, s in studies(env.patients) if p.pid == "PID777")
    scp = storescp()
    _, out = run(
        "movescu",
        env,
        "S",
        "STUDY",
        f"StudyInstanceUID={st.uid}",
        extra=("-aem", "STORESCP", "-d"),
        final=False,
    )
    assert final_dimse_status(out).startswith("0xb000"), out
    counts = counts_in(out)
    assert (counts["completed"], counts["failed"], counts["warning"]) == (2, 1, 0), out
    assert len(scp.files()) == 2


@contextlib.contextmanager
def _served_by(server: Server, process: str):
    """Make the next association land on the daemon or on its worker process.

    The daemon keeps a lone modality and, once it serves one, counts as
    several connections busier (scp/balance.py): idle connections held so
    that it has at least as many as the worker send the next one to the worker. The
    worker, unlike the daemon, has no numpy: the daemon decompresses for it.
    """
    slots = Path(server.cfg.data_dir) / "run" / "dicom-connections"

    def counts() -> tuple[int, int]:  # (daemon, worker) as the processes count them
        return struct.unpack("ii", slots.read_bytes()[:8])

    socks: list[socket.socket] = []

    def connect() -> None:
        before = sum(counts())
        socks.append(socket.create_connection(("127.0.0.1", server.port)))
        poll(lambda: sum(counts()) > before, 10, what="the connection accepted")

    try:
        if process == "worker":
            while not (counts()[0] >= 1 and counts()[0] >= counts()[1]):
                connect()
            held = counts()
            with socket.create_connection(("127.0.0.1", server.port)):  # where does the next go?
                poll(lambda: counts() == (held[0], held[1] + 1), 10, what="the probe on the worker")
            poll(lambda: counts() == held, 10, what="the probe closed")
        yield
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("process", ["daemon", "worker"])
def test_conversion_when_destination_accepts_only_implicit(env, storescp, process):
    """JPEG baseline, RLE and JPEG 2000 files are decompressed for an implicit-only peer."""
    comp = sorted((env.tmp / "compressed").iterdir())
    uids = [sop_uid(p) for p in comp]
    title = f"IMPLICIT-{process[0].upper()}"
    scp = storescp(title, "+xi")
    with _served_by(env.server, process):
        status, out = run(
            "movescu",
            env,
            "S",
            "IMAGE",
            "SOPInstanceUID=" + "\\".join(uids),
            extra=("-aem", title),
        )
    assert status == "Success", out
    files = scp.files()
    assert len(files) == len(comp)
    for f in files:
        got = pydicom.dcmread(f)
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        original = pydicom.dcmread(env.originals[got.SOPInstanceUID])
        assert np.array_equal(got.pixel_array, original.pixel_array), f.name
    assert "3 converted" in env.server.output()


@pytest.mark.parametrize("process", ["daemon", "worker"])
def test_big_endian_converted_for_implicit_peer(env, storescp, process):
    """An Explicit VR Big Endian MR goes to an Implicit-LE-only peer byte-swapped:
    the same pixel values, the same patient (PS3.5 7.3)."""
    path = env.tmp / "bigendian" / BIG_ENDIAN
    title = f"IMPLICIT3-{process[0].upper()}"
    scp = storescp(title, "+xi")
    with _served_by(env.server, process):
        status, out = run(
            "movescu", env, "S", "IMAGE", f"SOPInstanceUID={sop_uid(path)}", extra=("-aem", title)
        )
    assert status == "Success", out
    (f,) = scp.files()
    got = pydicom.dcmread(f)
    original = pydicom.dcmread(path)
    assert original.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(got.pixel_array, original.pixel_array)
    assert got.pixel_array.std() > 0 and got.PatientName == original.PatientName
    assert got.Rows == original.Rows and got.WindowCenter == original.WindowCenter


def test_uncompressed_explicit_converted_for_implicit_peer(env, storescp):
    _, st = next((p, s) for p, s in studies(env.patients) if p.pid == "PID002")
    scp = storescp("IMPLICIT2", "+xi")
    status, _ = run(
        "movescu", env, "S", "STUDY", f"StudyInstanceUID={st.uid}", extra=("-aem", "IMPLICIT2")
    )
    assert status == "Success"
    for f in scp.files():
        got = pydicom.dcmread(f)
        original = pydicom.dcmread(env.originals[got.SOPInstanceUID])
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        assert got.PixelData == original.PixelData and got.PatientName == original.PatientName


def test_cancel_stops_a_large_move(env, storescp):
    scp = storescp()
    _, out = run(
        "movescu",
        env,
        "S",
        "STUDY",
        f"StudyInstanceUID={env.large_study}",
        extra=("-aem", "STORESCP", "--cancel", "1", "-d"),
        final=False,
    )
    assert final_dimse_status(out).startswith("0xfe00"), out
    counts = counts_in(out)
    assert 0 < counts["remaining"] < LARGE
    assert counts["completed"] + counts["remaining"] == LARGE
    poll(lambda: "cancelled" in env.server.output(), 10, what="the cancel in the log")
    assert len(scp.files()) < LARGE


def test_destination_that_aborts_mid_move_ends_it_promptly(env):
    """A destination that sends A-ABORT after 10 images (pynetdicom's storage SCP:
    storescp cannot be told to): the move ends at once with A702/B000 and the
    failed count covering the rest, no DIMSE timeout, and the box keeps serving."""
    import time

    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    got = []

    def on_store(event):
        got.append(1)
        if len(got) == 10:
            event.assoc.abort()
        return 0x0000

    port = free_port()
    dest = AE(ae_title="ABORTER")
    dest.add_supported_context(CTImageStorage)
    server = dest.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        cli(env.ini, "ae", "add", "ABORTER", "--host", "127.0.0.1", "--port", str(port))
        t0 = time.monotonic()
        _, out = run(
            "movescu", env, "S", "STUDY", f"StudyInstanceUID={env.large_study}",
            extra=("-aem", "ABORTER", "-d"), final=False,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
    assert final_dimse_status(out).startswith(("0xa702", "0xb000")), out
    counts = counts_in(out)
    assert counts["completed"] <= 10 and counts["failed"] + counts["completed"] == LARGE, counts
    assert elapsed < 20, f"the move took {elapsed:.0f} s: it waited for a timeout"
    status, _ = run("findscu", env, "S", "STUDY", f"StudyInstanceUID={env.large_study}")
    assert status == "Success"


def test_find_cancel_stops_the_responses(env):
    """findscu --cancel 1 on the 300 images of the large study: FE00, fewer responses."""
    box = Box(env.server, env.ini, env.patients, env.tmp, runs=1000)
    status, rsps = findscu(
        box, "S", "IMAGE", f"StudyInstanceUID={env.large_study}", "SOPInstanceUID",
        extra=("--cancel", "1"),
    )  # fmt: skip
    assert status.startswith("Cancel"), status
    assert 1 <= len(rsps) < LARGE
    poll(lambda: "matches, cancelled" in env.server.output(), 10, what="the cancel in the log")


# -- C-GET --------------------------------------------------------------------------------


def test_get_cancel_mid_stream_stops_the_sub_operations(env):
    """A C-CANCEL sent while the images flow (getscu has no --cancel: pynetdicom's
    SCU sends it from its C-STORE handler after 20 images) ends the C-GET with
    FE00 and fewer images than the study holds."""
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    received = []
    state = {}

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        if len(received) == 20:
            event.assoc.send_c_cancel(state["msg_id"], state["cx_id"])
        return 0x0000

    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1", env.server.port, ae_title=env.server.ae_title,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip
    assert assoc.is_established
    cx = next(
        c for c in assoc.accepted_contexts
        if c.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
    )  # fmt: skip
    state.update(msg_id=1, cx_id=cx.context_id)
    ident = pydicom.Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = env.large_study
    try:
        statuses = [
            (int(rsp.Status), rsp)
            for rsp, _ in assoc.send_c_get(
                ident, StudyRootQueryRetrieveInformationModelGet, msg_id=1
            )
            if rsp is not None and "Status" in rsp
        ]
    finally:
        assoc.release()
    final, rsp = statuses[-1]
    assert final == 0xFE00, [hex(s) for s, _ in statuses]
    assert 20 <= len(received) < LARGE
    assert rsp.NumberOfCompletedSuboperations == len(received)
    assert rsp.NumberOfRemainingSuboperations == LARGE - len(received)
    poll(lambda: "C-GET from FINDSCU" in env.server.output() and "cancelled" in env.server.output(),
         10, what="the cancelled C-GET in the log")  # fmt: skip


@pytest.mark.parametrize(("model", "level"), [("S", "STUDY"), ("P", "STUDY"), ("O", "STUDY")])
def test_get_is_byte_identical(env, model, level):
    p, st = next((p, s) for p, s in studies(env.patients) if p.pid == "PID001")
    env.runs += 1
    out_dir = env.tmp / f"get{env.runs}"
    out_dir.mkdir()
    keys = [f"StudyInstanceUID={st.uid}"]
    if model in ("P", "O"):
        keys.insert(0, f"PatientID={p.pid}")
    status, out = run("getscu", env, model, level, *keys, extra=("-od", str(out_dir)))
    assert status == "Success", out
    files = sorted(out_dir.iterdir())
    assert {sop_uid(f) for f in files} == {i.uid for se in st.series for i in se.instances}
    assert_identical(env, files)
    assert "C-GET from FINDSCU" in env.server.output()


def test_get_compressed_as_stored(env):
    """getscu proposes the stored syntaxes too, so compressed files come back unchanged."""
    comp = sorted((env.tmp / "compressed").iterdir())
    env.runs += 1
    out_dir = env.tmp / f"get{env.runs}"
    out_dir.mkdir()
    uid = sop_uid(comp[0])
    status, out = run(
        "getscu",
        env,
        "S",
        "IMAGE",
        f"SOPInstanceUID={uid}",
        extra=("-od", str(out_dir), "+xa") if _getscu_has("+xa") else ("-od", str(out_dir)),
    )
    assert status == "Success", out
    files = list(out_dir.iterdir())
    assert len(files) == 1
    got = pydicom.dcmread(files[0])
    original = pydicom.dcmread(comp[0])
    if got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID:
        assert dataset_bytes(files[0]) == dataset_bytes(comp[0])
    else:  # getscu did not offer the compressed syntax: converted
        assert np.array_equal(got.pixel_array, original.pixel_array)


def _getscu_has(option: str) -> bool:
    proc = subprocess.run(["getscu", "--help"], capture_output=True, text=True)
    return f" {option} " in proc.stdout


# -- C-MOVE to Orthanc ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc is not installed")
def test_move_to_orthanc(env):
    orthanc = Orthanc(env.tmp / "orthanc", env.server.port)
    try:
        cli(env.ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        _, st = next((p, s) for p, s in studies(env.patients) if p.pid == "PID004")
        status, out = run(
            "movescu", env, "S", "STUDY", f"StudyInstanceUID={st.uid}", extra=("-aem", "ORTHANC")
        )
        assert status == "Success", out
        ids = orthanc.get("/instances")
        assert len(ids) == st.n_instances
        for oid in ids:
            path = env.tmp / "orthanc" / f"{oid}.dcm"
            path.write_bytes(orthanc.get(f"/instances/{oid}/file"))
            assert dataset_bytes(path) == dataset_bytes(env.originals[sop_uid(path)])
        # Orthanc reads the Latin-1 name as stored.
        tags = orthanc.get(f"/instances/{ids[0]}/simplified-tags")
        assert tags["PatientName"] == "MÜLLER^JÜRGEN"
    finally:
        orthanc.stop()


# -- C-ECHO SCU (the web page's Ping) --------------------------------------------------------


def test_echo_scu(env, storescp):
    from pacsbox import scu

    scp = storescp("ECHOTARGET")
    res = scu.echo("PACSBOX", scu.Peer("ECHOTARGET", "127.0.0.1", scp.port), timeout=5)
    assert res.ok and res.status == 0
    res = scu.echo("PACSBOX", scu.Peer("NOBODY", "127.0.0.1", free_port()), timeout=5)
    assert not res.ok and res.message.startswith("refused: connection refused")


def test_get_from_native_storage_is_byte_identical(tmp_path):
    """StorageFormat=Native keeps the bare data set; C-GET still sends it unchanged."""
    patients = build(tmp_path / "corpus", [("PIDN01", "NATIVE^ONE", "19700101", "F", "", [
        ("20240102", "101010", "ACCN1", [("CT", 2)]),
    ])], rows=4, cols=4)  # fmt: skip
    ini, srv = start_box(tmp_path, StorageFormat="Native")
    try:
        store_folder(srv, tmp_path / "corpus")
        st = patients[0].studies[0]
        out_dir = tmp_path / "got"
        out_dir.mkdir()
        env = Env(srv, ini, tmp_path, patients, {}, "")
        status, out = run(
            "getscu", env, "S", "STUDY", f"StudyInstanceUID={st.uid}", extra=("-od", str(out_dir))
        )
        assert status == "Success", out
        originals = {i.uid: i.path for _, _, _, i in instances(patients)}
        files = sorted(out_dir.iterdir())
        assert len(files) == 2
        for f in files:
            assert dataset_bytes(f) == dataset_bytes(originals[sop_uid(f)])
    finally:
        srv.stop()
