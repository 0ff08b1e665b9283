"""Study status back to the RIS: the order arrives by mllp_send, its images by DCMTK
storescu, and the RIS's MLLP listener (python-hl7's asyncio server, as a bare RIS
would run it) gets one ORM^O01 SC for that order, once it is up (INT-1, optional)."""

from __future__ import annotations

import asyncio
import threading

import hl7
from hl7.mllp import start_hl7_server
from pydicom.uid import generate_uid

from tests.helpers import Server, cli, dcmtk, free_port, poll, write_config
from tests.integration.web.conftest import make_dicom
from tests.interop.test_hl7 import _order, rows, send


class Ris:
    """An MLLP listener that keeps what it receives and answers AA."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[hl7.Message] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        async def client(reader, writer):
            try:
                while True:
                    msg = await reader.readmessage()
                    self.received.append(msg)
                    writer.writemessage(msg.create_ack("AA"))
                    await writer.drain()
            except asyncio.IncompleteReadError:
                writer.close()

        return await start_hl7_server(client, "127.0.0.1", self.port, encoding="utf-8")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_the_ris_hears_when_an_orders_images_arrive_once_it_is_up(tmp_path):
    port, ris_port = free_port(), free_port()
    ini = write_config(
        tmp_path / "box", HL7PortNumber=port, HL7StatusDestination=f"127.0.0.1:{ris_port}"
    )
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    study = generate_uid()
    order = _order("S1", "NW", "PLS", "PS1", "DOE^JOHN", "ACCS").replace(
        "\rORC|", f"\rZDS|{study}^^Application^DICOM\rORC|"
    )
    other, mine = tmp_path / "other.dcm", tmp_path / "mine.dcm"
    other.write_bytes(make_dicom(patient_id="NOBODY"))
    mine.write_bytes(make_dicom(study_uid=study, patient_id="PS1", patient_name="DOE^JOHN"))
    server = Server(ini).start()
    ris = None
    try:
        assert send(port, order)[0].startswith("MSA|AA|S1")
        for f in (other, mine):  # a study of no order first: it is passed over
            r = dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.port), str(f))
            assert r.returncode == 0, r.stderr
        poll(lambda: "HL7 status to" in server.output(), 30, what="a try while the RIS is down")
        ris = Ris(ris_port)
        poll(lambda: ris.received, 90, what="the status message")
        (msg,) = ris.received
        # The sender journals once the ACK is back, a moment after the RIS has the message.
        journal = poll(
            lambda: rows(server.cfg, "SELECT target, detail FROM journal WHERE action = 'hl7 status'"),
            30, what="the journal line of the status",
        )  # fmt: skip
    finally:
        server.stop()
        if ris is not None:
            ris.stop()
    field = msg.extract_field
    assert str(msg.segment("MSH")[9]) == "ORM^O01"
    assert [field("ORC", 1, n) for n in (1, 2, 5)] == ["SC", "PLS", "IP"]
    assert (field("PID", 1, 3, 1, 1), field("PID", 1, 5, 1, 1)) == ("PS1", "DOE")
    assert (field("OBR", 1, 18), field("OBR", 1, 24), field("ZDS", 1, 1, 1, 1)) == (
        "ACCS",
        "CT",
        study,
    )
    assert journal == [(study, "ORM^O01 SC for order PLS: AA")]
