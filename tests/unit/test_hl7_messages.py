"""HL7 v2 fields to worklist and patient values (IHE RAD-1/RAD-4), and the ACK's shape."""

from __future__ import annotations

import pytest

from pacsbox.errors import Hl7Rejected
from pacsbox.hl7 import ack, messages

MSH = "MSH|^~\\&|RIS|HOSP|PACSBOX|CLINIC|20261204101500||{kind}|{ctl}|P|2.5||||||{cs}"
PID = "PID|1||P123^^^HOSP^MR~OTHER^^^X||M\\S\\LLER^J\u00d6RG^K^JR^DR||19700215|M"
ORM = "\r".join([
    MSH.format(kind="ORM^O01", ctl="C1", cs=""),
    PID,
    "|".join(["PV1", "1", "O", "RAD^1", "", "", "", "", "1234^WELBY^MARCUS^^^DR", *[""] * 10,
              "V77"]),
    "ORC|NW|PL1|FL1||SC||^^^20261205090000^^R|||||5678^HOUSE^GREGORY",
    "|".join(["OBR", "1", "PL1", "FL1", "CTH^CT head plain^L", *[""] * 13, "ACC1", "RP1", "SPS1",
              "", "", "", "CT", "", "", "^^^202612050930"]),
    "ZDS|1.2.3.4^PACS^Application^DICOM",
])  # fmt: skip


def _msg(text: str):
    return messages.parse(messages.decode(text.encode("utf-8"), "UNICODE UTF-8")[0])


def test_an_order_maps_to_worklist_columns():
    (order,) = messages.orders(_msg(ORM), {"CT": "CT01"})
    assert order.control == "NW" and order.key == "PL1"
    v = order.values
    assert (v["patient_id"], v["issuer"]) == ("P123", "HOSP")
    # \S\ unescaped, but a caret cannot be inside a DICOM PN component; PN order
    assert v["patient_name"] == "M LLER^J\u00d6RG^K^DR^JR"
    assert (v["birth_date"], v["sex"]) == ("19700215", "M")
    assert (v["placer_order"], v["filler_order"]) == ("PL1", "FL1")
    assert v["requested_procedure_description"] == v["sps_description"] == "CT head plain"
    assert (v["accession_number"], v["requested_procedure_id"], v["sps_id"]) == (
        "ACC1",
        "RP1",
        "SPS1",
    )
    assert (v["modality"], v["station_ae"]) == ("CT", "CT01")
    assert (v["start_date"], v["start_time"]) == ("20261205", "0930")
    assert v["study_instance_uid"] == "1.2.3.4"
    assert v["referring_physician"] == "WELBY^MARCUS^^DR"
    assert v["requesting_physician"] == "HOUSE^GREGORY"
    assert (v["patient_location"], v["admission_id"]) == ("RAD", "V77")


def test_tq1_start_wins_over_obr_27_and_an_unmapped_modality_has_no_station():
    text = ORM.replace("ZDS|", "TQ1|1||||||20261206143000+0100\rZDS|")
    (order,) = messages.orders(_msg(text), {"MR": "MR01"})
    assert (order.values["start_date"], order.values["start_time"]) == ("20261206", "143000")
    assert order.values["station_ae"] == ""


def test_omi_ipc_fields():
    text = "\r".join([
        MSH.format(kind="OMI^O23^OMI_O23", ctl="C2", cs=""), PID,
        "ORC|NW|PL2", "TQ1|1||||||202612071000",
        "OBR|1|PL2||MRK^MR knee",
        "IPC|ACC2|RP2|1.2.840.99.1|SPS2|MR||||MRSTATION",
    ])  # fmt: skip
    (order,) = messages.orders(_msg(text), {})
    v = order.values
    assert (v["accession_number"], v["requested_procedure_id"], v["sps_id"]) == (
        "ACC2",
        "RP2",
        "SPS2",
    )
    assert (v["study_instance_uid"], v["modality"], v["station_ae"]) == (
        "1.2.840.99.1",
        "MR",
        "MRSTATION",
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (("PID|1||P123^^^HOSP^MR~OTHER^^^X", "PID|1||"), "PID-3"),
        (("ORC|NW|", "ORC||"), "ORC-1"),
        (("ORC|NW|", "ORC|ZZ|"), "order control ZZ"),
        (("ORC|NW|PL1|FL1", "ORC|NW||"), "no placer"),
    ],
)
def test_orders_missing_what_they_need_are_rejected(change, why):
    text = ORM.replace(*change)
    if why == "no placer":
        text = text.replace("OBR|1|PL1|FL1|", "OBR|1|||").replace("|ACC1|", "||")
    with pytest.raises(Hl7Rejected, match=why) as err:
        messages.orders(_msg(text), {})
    assert err.value.hl7_ack == "AR"


def test_adt_demographics_only_what_was_sent_and_two_quotes_delete():
    msg = _msg(MSH.format(kind="ADT^A08", ctl="C3", cs="") + '\rPID|1||P9||SMITH^ANNA||""|')
    assert messages.demographics(msg) == {"patient_name": "SMITH^ANNA", "birth_date": ""}
    merge = _msg(MSH.format(kind="ADT^A40", ctl="C4", cs="") + "\rPID|1||NEW\rMRG|OLD^^^HOSP")
    assert messages.merged_id(merge) == ("OLD", "HOSP")
    with pytest.raises(Hl7Rejected, match="MRG-1"):
        messages.merged_id(_msg(MSH.format(kind="ADT^A40", ctl="C5", cs="") + "\rPID|1||NEW"))


def test_charsets_by_msh_18_and_the_default():
    latin = (MSH.format(kind="ADT^A08", ctl="C6", cs="8859/1") + "\rPID|1||P1||M\u00dcLLER").encode(
        "latin-1"
    )
    text, name = messages.decode(latin, "UNICODE UTF-8")
    assert name == "8859/1" and "M\u00dcLLER" in text
    utf8 = (MSH.format(kind="ADT^A08", ctl="C7", cs="") + "\rPID|1||P1||M\u00dcLLER").encode()
    assert messages.decode(utf8, "UNICODE UTF-8")[1] == "UNICODE UTF-8"
    with pytest.raises(Hl7Rejected, match="not valid UNICODE UTF-8"):
        messages.decode(latin.replace(b"8859/1", b""), "UNICODE UTF-8")
    with pytest.raises(Hl7Rejected, match="not supported"):
        messages.decode(latin.replace(b"8859/1", b"KLINGON"), "UNICODE UTF-8")


@pytest.mark.parametrize(
    "raw", [b"PID|1||P1", b"MSHA^~\\&|RIS", b"MSH|^^^^|RIS", b"MSH|", b"\x00\x01\x02"]
)
def test_no_msh_or_broken_delimiters_are_rejected(raw):
    with pytest.raises(Hl7Rejected) as err:
        messages.decode(raw, "UNICODE UTF-8")
    assert err.value.hl7_ack == "AR"


def test_conversions():
    assert messages.date_time("20261204") == ("20261204", "")
    assert messages.date_time("202612041030-0500") == ("20261204", "1030")
    assert messages.date_time("20261204103015.1234") == ("20261204", "103015")
    assert messages.date_time("garbage") == ("", "")
    assert [messages.sex(s) for s in ("M", "f", "U", "A", "")] == ["M", "F", "", "O", ""]
    assert messages.station_map(" ct = CT01 , MR=MR01,junk") == {"CT": "CT01", "MR": "MR01"}


def test_ack_echoes_the_control_id_with_reason_and_err():
    msg = _msg(ORM)
    text = ack.build(msg, "AE", "order PL1 | gone", 204, "PACSBOX")
    segments = text.split("\r")
    assert segments[0].startswith("MSH|^~\\&|PACSBOX||RIS|HOSP|")
    assert "|ACK^O01^ACK|" in segments[0]
    assert segments[1] == "MSA|AE|C1|order PL1 \\F\\ gone"
    assert segments[2].startswith("ERR|||204^Unknown key identifier^HL70357|E|")
    assert ack.build(msg, "AA", "", 0, "PACSBOX").split("\r")[1] == "MSA|AA|C1"
    bare = ack.build(None, "AR", "no MSH", 100, "PACSBOX").split("\r")
    assert bare[1] == "MSA|AR||no MSH" and bare[2].startswith("ERR|||100^")
