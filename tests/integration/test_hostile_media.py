"""Media the fuzzer crafted, as readable cases: each once escaped the importer or broke its report.

The inputs themselves are replayed from ``tests/fuzz/crashes/``; these say
what the user sees instead: the medium imported as far as it can be, and a
report of one line per file.
"""

from __future__ import annotations

import functools

import pydicom
import pytest

from pacsbox.media.importer import run_import, run_import_files
from tests.fuzz.targets_media import (
    check_report,
    dicomdir_with,
    file_set,
    instances,
    one_line_printable,
    open_archive,
    zip_of,
)


@pytest.fixture
def archive(tmp_path):
    arc = open_archive(tmp_path)
    yield arc
    arc.close()


@pytest.fixture
def store(archive):
    return functools.partial(archive.store, source="import")


@pytest.fixture
def medium(tmp_path):
    """The fuzz target's medium: two instances in the folders their DICOMDIR names."""
    root = tmp_path / "medium"
    for rel, data in file_set().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_dicomdir_records_that_are_not_records_mean_a_scan(archive, store, medium):
    ds = pydicom.dcmread(medium / "DICOMDIR")
    del ds.DirectoryRecordSequence
    ds.add_new(0x00041220, "UI", "1.2.3")  # the sequence's tag, holding a UID instead
    ds.save_as(medium / "DICOMDIR")

    report = run_import(medium, store)

    check_report(report, archive)
    assert report.kind == "folder"
    assert "directory record 1 is not a data set" in report.notes[0]
    assert {f.sop_instance_uid for f in report.imported} == set(instances())


def test_control_characters_in_a_file_id_stay_in_one_report_line(archive, store, medium):
    (medium / "DICOMDIR").write_bytes(dicomdir_with([["IM\r\n/medium: 99 imported"], ["\x1b[2J"]]))

    report = run_import(medium, store)

    check_report(report, archive)
    assert all(one_line_printable(line) for line in report.lines())
    assert [f.name for f in report.rejected] == ["IM\\r\\n/medium: 99 imported", "\\x1b[2J"]


def test_zip_entry_without_a_name_is_rejected_and_the_rest_imported(archive, store, tmp_path):
    one, two = instances().values()
    path = tmp_path / "upload.zip"
    path.write_bytes(zip_of({"": one, "IM2": two}))

    report = run_import_files([path], store)

    check_report(report, archive)
    assert [(f.name, f.reason) for f in report.rejected] == [
        ("upload.zip:", "ZIP entry without a name")
    ]
    assert [f.name for f in report.imported] == ["upload.zip:IM2"]


def test_zip_needing_an_unknown_version_is_rejected_whole(archive, store, tmp_path):
    data = bytearray(zip_of({"IM1": next(iter(instances().values()))}))
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 0xFF  # version needed to extract: 25.5
    path = tmp_path / "upload.zip"
    path.write_bytes(bytes(data))

    report = run_import_files([path], store)

    check_report(report, archive)
    assert [(f.name, f.reason) for f in report.rejected] == [
        ("upload.zip", "not a readable ZIP archive (zip file version 25.5)")
    ]
