"""``pacsbox worklist add|list|remove`` as the issue spells them."""

from __future__ import annotations

import json

from tests.helpers import cli, write_config

ADD = ["worklist", "add", "--patient-id", "P1", "--patient-name", "DOE^JANE", "--accession",
       "ACC1", "--modality", "CT", "--station-ae", "CT1", "--date", "20261204"]  # fmt: skip


def test_add_list_remove(tmp_path):
    ini = write_config(tmp_path / "box")
    first = cli(ini, *ADD, "--time", "0930", "--procedure", "CT HEAD", "--birth-date",
                "19700101", "--sex", "F").stdout.strip()  # fmt: skip
    second = cli(ini, *ADD[:-1], "20261205").stdout.strip()
    assert first.isdigit() and second.isdigit() and first != second
    rows = json.loads(cli(ini, "worklist", "list", "--json").stdout)
    assert [r["id"] for r in rows] == [int(first), int(second)]
    r = rows[0]
    for key in ("id", "patient_id", "patient_name", "accession", "modality", "station_ae",
                "start", "status"):  # fmt: skip
        assert key in r
    assert (r["patient_id"], r["patient_name"], r["accession"]) == ("P1", "DOE^JANE", "ACC1")
    assert (r["modality"], r["station_ae"], r["status"]) == ("CT", "CT1", "scheduled")
    assert r["start"] == "2026-12-04T09:30" and r["procedure"] == "CT HEAD"
    assert (r["birth_date"], r["sex"]) == ("19700101", "F")
    assert r["study_instance_uid"].startswith("2.25.")  # generated: none was given
    table = cli(ini, "worklist", "list").stdout
    assert "DOE^JANE" in table and "CT1" in table
    assert cli(ini, "worklist", "remove", first).returncode == 0
    assert [r["id"] for r in json.loads(cli(ini, "worklist", "list", "--json").stdout)] == [
        int(second)
    ]


def test_errors_are_one_line_and_nonzero(tmp_path):
    ini = write_config(tmp_path / "box")
    gone = cli(ini, "worklist", "remove", "999", check=False)
    assert gone.returncode != 0
    assert gone.stderr.strip() == "pacsbox: no worklist item 999"
    bad = cli(ini, *ADD[:-1], "2026-12-04", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "YYYYMMDD" in bad.stderr
    long_ae = cli(ini, *ADD[:-3], "A_STATION_AE_TOO_LONG", "--date", "20261204", check=False)
    assert long_ae.returncode != 0 and "at most 16" in long_ae.stderr
    assert json.loads(cli(ini, "worklist", "list", "--json").stdout) == []
