"""Worklist and HL7 figures (issue 18), each against its peer in the same run:

- Modality Worklist C-FIND by Scheduled Station AE and today's date with
  10,000 scheduled steps (20 stations over 25 days: about 20 match), DCMTK
  ``findscu -W`` end to end, against pacsbox and against DCMTK ``wlmscpfs``
  serving the same 10,000 steps as ``.wl`` files. Targets: pacsbox at least
  5x faster than wlmscpfs, and under 50 ms.
- HL7 ORM^O01 new orders over one MLLP connection, each sent after the last
  one's ACK (the python-hl7 MLLP client), into pacsbox (each order becomes a
  durable worklist item before its AA) and into a bare python-hl7 asyncio MLLP
  server that only ACKs. Target: pacsbox at least 0.8x its rate.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

from bench.common import (
    DCMTK_ENV,
    WORK,
    Server,
    cli,
    env_int,
    free_port,
    median_ms,
    poll,
    timed,
    write_config,
)
from tests.peers import WorklistSCP, listening

ITEMS = env_int("PACSBOX_BENCH_WORKLIST_ITEMS", 10_000)
STATIONS = 20
DAYS = 25
RUNS = env_int("PACSBOX_BENCH_RUNS", 10)
ORDERS = env_int("PACSBOX_BENCH_HL7_ORDERS", 500)
TODAY = dt.date.today()


def _step(n: int) -> dict[str, str]:
    day = TODAY + dt.timedelta(days=n % DAYS - DAYS // 2)
    return {
        "patient_id": f"WL{n:06d}",
        "patient_name": f"BENCH^PATIENT{n}",
        "birth_date": "19700101",
        "sex": "O",
        "accession_number": f"A{n:07d}",
        "requested_procedure_description": "CT CHEST",
        "study_instance_uid": f"1.2.826.0.1.3680043.8.498.5151.{n}",
        "station_ae": f"ST{n // DAYS % STATIONS:02d}",
        "modality": "CT",
        "start_date": f"{day:%Y%m%d}",
        "start_time": "0930",
        "sps_description": "chest plain",
    }


def _fill_pacsbox(ini) -> None:
    from pacsbox.archive import Archive
    from pacsbox.config import load
    from pacsbox.db import worklist
    from pacsbox.db.transaction import write_transaction

    archive = Archive(load(ini))
    try:
        with write_transaction():
            for n in range(ITEMS):
                worklist.add(_step(n), source="bench")
    finally:
        archive.close()


def _fill_wlmscpfs(scp: WorklistSCP) -> None:
    from pydicom.dataset import Dataset

    for n in range(ITEMS):
        s = _step(n)
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = s["patient_name"], s["patient_id"]
        ds.PatientBirthDate, ds.PatientSex = s["birth_date"], s["sex"]
        ds.AccessionNumber = s["accession_number"]
        ds.RequestedProcedureID = s["accession_number"]
        ds.RequestedProcedureDescription = s["requested_procedure_description"]
        ds.StudyInstanceUID = s["study_instance_uid"]
        ds.ReferringPhysicianName = ""
        ds.ReferencedStudySequence = []
        step = Dataset()
        step.ScheduledStationAETitle, step.Modality = s["station_ae"], s["modality"]
        step.ScheduledProcedureStepStartDate = s["start_date"]
        step.ScheduledProcedureStepStartTime = "093000"
        step.ScheduledProcedureStepID = s["accession_number"]
        step.ScheduledProcedureStepDescription = s["sps_description"]
        step.ScheduledPerformingPhysicianName = ""
        ds.ScheduledProcedureStepSequence = [step]
        scp.write(f"{n:06d}", ds)


def _find(port: int, called: str, station: str) -> list[str]:
    sps = "ScheduledProcedureStepSequence[0]."
    keys = [f"{sps}ScheduledStationAETitle={station}",
            f"{sps}ScheduledProcedureStepStartDate={TODAY:%Y%m%d}",
            f"{sps}ScheduledProcedureStepStartTime", f"{sps}Modality",
            f"{sps}ScheduledProcedureStepID", f"{sps}ScheduledProcedureStepDescription",
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
            "StudyInstanceUID", "RequestedProcedureID", "RequestedProcedureDescription"]  # fmt: skip
    args = ["findscu", "-W", "-v", "-aet", "FINDSCU", "-aec", called, "127.0.0.1", str(port)]
    for k in keys:
        args += ["-k", k]
    return args


def _responses(text: str) -> int:
    return text.count("Find Response: ")  # "Find Response: 3 (Pending)"; the final has no colon


def _query_times(args: list[str], expect: int | None) -> tuple[list[float], int]:
    samples, count = [], 0
    timed(args)  # a first query warms both servers' caches alike
    for _ in range(RUNS):
        seconds, out = timed(args)
        count = _responses(out)
        if expect is not None and count != expect:
            raise RuntimeError(f"{args[6]} returned {count} steps, the other {expect}")
        samples.append(seconds)
    return samples, count


def _mwl(base) -> dict:
    ini = write_config(base / "box", SyncWrites="yes")
    cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    t0 = time.perf_counter()
    _fill_pacsbox(ini)
    fill_pacsbox = time.perf_counter() - t0
    scp = WorklistSCP(base / "wl")
    t0 = time.perf_counter()
    _fill_wlmscpfs(scp)
    fill_wl = time.perf_counter() - t0
    station = "ST07"
    expect = sum(1 for n in range(ITEMS) if _step(n)["station_ae"] == station
                 and _step(n)["start_date"] == f"{TODAY:%Y%m%d}")  # fmt: skip
    server = Server(ini).start()
    try:
        theirs, n_wl = _query_times(_find(scp.port, scp.title, station), expect)
        ours, n_ours = _query_times(_find(server.port, server.ae_title, station), expect)
    finally:
        server.stop()
        scp.stop()
    return {
        "steps": ITEMS,
        "matches": n_ours,
        "pacsbox_ms": median_ms(ours),
        "wlmscpfs_ms": median_ms(theirs),
        "speedup": round(median_ms(theirs) / median_ms(ours), 2),
        "target": "speedup >= 5 and pacsbox_ms < 50",
        "fill_seconds": {"pacsbox": round(fill_pacsbox, 1), "wlmscpfs": round(fill_wl, 1)},
    }


def _order(n: int) -> str:
    placer = f"P{n:07d}"
    obr = ["OBR", "1", placer, "", "CTH^CT head plain^L", *[""] * 13, f"B{n:07d}",
           "RP" + placer, "SPS" + placer, "", "", "", "CT", "", "", "^^^202612050930"]  # fmt: skip
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|PACSBOX|CLINIC|20261204101500||ORM^O01|C{n}|P|2.5",
        f"PID|1||H{n:06d}^^^HOSP||ORDER^PATIENT{n}||19700215|M",
        f"ORC|NW|{placer}",
        "|".join(obr),
    ])  # fmt: skip


def _send_orders(port: int, first: int) -> float:
    """Seconds to send ORDERS orders over one connection, each after the last one's ACK."""
    from hl7.client import MLLPClient

    with MLLPClient("127.0.0.1", port) as client:
        client.send_message(_order(first - 1))  # the connection and the first message's setup
        t0 = time.perf_counter()
        for n in range(first, first + ORDERS):
            ack = client.send_message(_order(n))
            text = ack.decode() if isinstance(ack, bytes) else str(ack)
            if "MSA|AA" not in text:
                raise RuntimeError(f"order {n} not accepted: {text[:200]!r}")
        return time.perf_counter() - t0


BARE_SERVER = """
import asyncio, sys
from hl7.mllp import start_hl7_server

async def client(reader, writer):
    try:
        while True:
            msg = await reader.readmessage()
            writer.writemessage(msg.create_ack("AA"))
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()

async def main():
    server = await start_hl7_server(client, "127.0.0.1", int(sys.argv[1]), encoding="utf-8")
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _hl7(base) -> dict:
    port = free_port()
    ini = write_config(base / "hl7box", SyncWrites="yes", HL7PortNumber=port)
    server = Server(ini).start()
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)], env=DCMTK_ENV)
    try:
        poll(lambda: listening(port) and listening(bare_port), 20, what="the MLLP listeners")
        ours, theirs = [], []
        for run in range(3):  # in turns, so a slow phase of the machine hits both
            theirs.append(_send_orders(bare_port, 1 + run * (ORDERS + 1)))
            ours.append(_send_orders(port, 1 + run * (ORDERS + 1)))
    finally:
        bare.terminate()
        bare.wait(10)
        server.stop()
    rate_ours = ORDERS / (median_ms(ours) / 1000)
    rate_theirs = ORDERS / (median_ms(theirs) / 1000)
    return {
        "orders_per_run": ORDERS,
        "pacsbox_per_s": round(rate_ours, 1),
        "bare_hl7_per_s": round(rate_theirs, 1),
        "ratio": round(rate_ours / rate_theirs, 2),
        "target": "ratio >= 0.8",
    }


def main() -> dict:
    base = WORK / f"worklist-{os.getpid()}"
    base.mkdir(parents=True)
    return {"mwl_find": _mwl(base), "hl7_orders": _hl7(base)}
