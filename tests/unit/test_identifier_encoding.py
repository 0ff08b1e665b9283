"""wire.identifier writes C-FIND response identifiers byte for byte as pydicom does, and
leaves to pydicom what it does not know."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from pacsbox.wire.identifier import encode as fast


def _responses() -> list[Dataset]:
    a = Dataset()
    a.QueryRetrieveLevel = "STUDY"
    a.PatientName = "Yamada^Tarou=山田^太郎"
    a.SpecificCharacterSet = "ISO_IR 192"
    a.ModalitiesInStudy = ["CT", "MR"]
    a.NumberOfStudyRelatedInstances = 12
    a.StudyInstanceUID = "1.2.3"  # odd length: padded with a NUL
    a.StudyDescription = "odd"  # padded with a space
    a.add_new(0x00100030, "DA", None)
    a.add_new(0x00101030, "DS", None)
    a.add_new(0x00101030, "DS", "72.5")
    a.PregnancyStatus = 4
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledProtocolCodeSequence = []
    inner = Dataset()
    inner.CodeValue = "X1"
    step.ReferencedStudySequence = [inner, Dataset()]
    a.ScheduledProcedureStepSequence = [step]
    a.ReferencedPatientSequence = []
    b = Dataset()
    b.PatientID = ""
    b.add_new(0x001021C0, "US", None)
    return [a, b]


@pytest.mark.parametrize("implicit", [True, False])
def test_same_bytes_as_pydicom(implicit):
    for ds in _responses():
        assert fast(ds, implicit) == encode(ds, implicit, True)


def test_what_it_leaves_to_pydicom():
    latin = Dataset()
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName = "MÜLLER"  # non-ASCII outside UTF-8: pydicom's encoder
    assert fast(latin, True) is None
    binary = Dataset()
    binary.add_new(0x7FE00010, "OB", b"\0\1")
    assert fast(binary, False) is None
