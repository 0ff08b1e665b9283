"""WorklistKeepDays: the running daemon deletes items scheduled too long ago, by itself."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.helpers import Server, cli, poll, write_config


def _add(ini, pid: str, days_ago: int) -> None:
    day = (dt.date.today() - dt.timedelta(days=days_ago)).strftime("%Y%m%d")
    cli(ini, "worklist", "add", "--patient-id", pid, "--patient-name", f"OLD^{pid}",
        "--accession", pid, "--modality", "CT", "--station-ae", "CT1", "--date", day)  # fmt: skip


def _pids(ini) -> list[str]:
    return sorted(
        r["patient_id"] for r in json.loads(cli(ini, "worklist", "list", "--json").stdout)
    )


@pytest.mark.parametrize("keep", [30, 0])
def test_old_items_expire(tmp_path, keep):
    ini = write_config(tmp_path / "box", SyncWrites="no", WorklistKeepDays=keep)
    _add(ini, "OLD", 60)
    _add(ini, "RECENT", 10)
    srv = Server(ini).start()
    try:
        if keep:
            poll(lambda: _pids(ini) == ["RECENT"], 30, interval=0.5, what="the old item to go")
            assert "worklist: 1 items scheduled over 30 days ago expired" in srv.output()
        else:
            poll(lambda: "ready on port" in srv.output(), 30)
            assert _pids(ini) == ["OLD", "RECENT"]  # 0 keeps them forever
    finally:
        srv.stop()
