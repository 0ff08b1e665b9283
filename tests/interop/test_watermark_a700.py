"""A700 through a real C-STORE: DCMTK storescu against the in-process SCP and the daemon,
when the disk is past its high-water mark and nothing can be purged."""

from __future__ import annotations

import json
import re

from pydicom.uid import generate_uid

from pacsbox.db import aes
from pacsbox.db.models import Patient
from tests.helpers import dcmtk, free_port, poll, write_config
from tests.integration.test_watermark import archive, cfg, disk, make_box, make_dataset  # noqa: F401


def test_cstore_answers_a700_when_nothing_can_be_purged(archive, cfg, disk, tmp_path):  # noqa: F811 - fixtures
    from pacsbox.scp.server import Listener
    from pacsbox.scp.store import make_store_service

    uids, wm, _ = make_box(archive, cfg, disk, [1, 2])  # both too recent to purge
    aes.ae_upsert("STORESCU", hostname="127.0.0.1")
    archive.space_check = wm.check
    listener = Listener(cfg, archive, [make_store_service(archive)])
    listener.start(port=free_port())
    f = tmp_path / "new.dcm"
    f.write_bytes(make_dataset(generate_uid(), generate_uid(), 0, "NEWPAT"))
    args = [
        "-aet",
        "STORESCU",
        "-aec",
        cfg.ApplicationEntityTitle,
        "127.0.0.1",
        str(listener.port),
        str(f),
    ]
    try:
        disk.set_percent(95)
        r = dcmtk("storescu", "-d", *args)
        out = r.stdout + r.stderr
        assert re.search(r"DIMSE Status\s*:\s*0xa700", out), out
        assert r.returncode != 0
        assert Patient.select().where(Patient.patient_id == "NEWPAT").count() == 0
        assert wm.state()["storage_full"] is True

        disk.set_percent(50)
        wm._invalidate()
        r = dcmtk("storescu", *args)
        assert r.returncode == 0, r.stderr
        assert Patient.select().where(Patient.patient_id == "NEWPAT").count() == 1
        assert wm.state()["storage_full"] is False
    finally:
        listener.stop(5)


def test_daemon_answers_a700_when_full(tmp_path):
    """The real daemon, real psutil figures: a 2% high-water mark makes any disk full, and a
    fresh box has nothing old enough to purge, so the first C-STORE gets A700."""
    from tests.helpers import Server, cli

    ini = write_config(tmp_path / "box", HighWaterMark=2, LowWaterMark=1)
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    srv = Server(ini).start()
    try:
        f = tmp_path / "new.dcm"
        f.write_bytes(make_dataset(generate_uid(), generate_uid(), 0, "NEWPAT"))
        r = dcmtk(
            "storescu",
            "-d",
            "-aet",
            "STORESCU",
            "-aec",
            srv.ae_title,
            "127.0.0.1",
            str(srv.port),
            str(f),
        )
        assert re.search(r"DIMSE Status\s*:\s*0xa700", r.stdout + r.stderr), r.stdout + r.stderr

        def full():
            try:
                return json.loads(srv.cfg.status_path.read_text()).get("storage_full")
            except (OSError, ValueError):
                return None

        poll(full, 10, what="status.json to say storage_full")
    finally:
        srv.stop()
