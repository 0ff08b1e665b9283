"""A database made by an earlier release opens, migrates, and keeps its rows."""

from __future__ import annotations

import sqlite3

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db.models import Patient, Study
from tests.helpers import write_config
from tests.synth import make_instance


def test_a_database_of_version_12_gains_the_edit_marks(tmp_path):
    cfg = load(write_config(tmp_path / "box", SyncWrites="no"))
    archive = Archive(cfg)
    archive.store(make_instance(patient_id="OLD1"), source="test")
    archive.close()
    # Take the database back to what release 12 made: no edit marks.
    path = str(cfg.data_dir / "pacsbox.db")
    with sqlite3.connect(path) as con:
        con.execute("DROP INDEX study_edit_pending")
        for table, column in (("patient", "edited"), ("study", "edited"), ("study", "edit_from")):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        con.execute("DELETE FROM schema_version WHERE version = 13")
    archive = Archive(cfg)
    try:
        pt = Patient.get(Patient.patient_id == "OLD1")
        assert (pt.edited, pt.num_instances) == ("", 1)
        assert [(s.edited, s.edit_from) for s in Study.select()] == [("", 0)]
        archive.store(make_instance(patient_id="OLD1"), source="test")
        assert Patient.get(Patient.patient_id == "OLD1").num_instances == 2
    finally:
        archive.close()
    with sqlite3.connect(path) as con:
        versions = [v for (v,) in con.execute("SELECT version FROM schema_version")]
        indexes = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='index'")]
    assert versions[-1] == 13 and "study_edit_pending" in indexes
