"""HL7 v2 fields to worklist and patient values, placed as IHE RAD-1/RAD-4 place them.

One mapping for every message type, so an ORM^O01, an OMI^O23 and an ADT
read the patient the same way. Values come out as the index and DICOM spell
them (PN with ``^``, dates YYYYMMDD), already unescaped by the parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hl7

from pacsbox.errors import Hl7Rejected

# HL7 table 0211 names -> Python codecs; an empty MSH-18 takes HL7Charset.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}
# ORC-1 order controls carried out (IHE RAD-4 NW/CA/DC/XO).
ORDER_CONTROLS = ("NW", "XO", "CA", "DC")
HL7_DELETE = '""'  # an HL7 field of two quotes: "delete the value"
_SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}


@dataclass
class Header:
    """What MSH says about a message: who sent it, what it is, how to answer."""

    control_id: str
    kind: str  # "ORM^O01"
    sender: str  # MSH-3 sending application
    facility: str  # MSH-4
    charset: str  # the HL7 name the message was decoded with


@dataclass
class Order:
    """One ORC/OBR group: the order control and the worklist columns it sets."""

    control: str
    values: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The order's number as a log line names it."""
        v = self.values
        return v.get("placer_order") or v.get("filler_order") or v.get("accession_number", "")


# -- bytes to a parsed message -----------------------------------------------------------


def decode(raw: bytes, default_charset: str) -> tuple[str, str]:
    """The message as text and the HL7 charset name it was read with; raises
    Hl7Rejected for no MSH, unusable delimiters, or an unknown or wrong charset."""
    sep, encoding = delimiters(raw)
    fields = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].split(sep)
    named = fields[17] if len(fields) > 17 else b""
    name = named.split(encoding[1:2])[0].decode("ascii", "replace").strip()
    name = name or default_charset
    codec = CHARSETS.get(name.upper())
    if codec is None:
        raise Hl7Rejected(f"character set {name!r} (MSH-18) is not supported", 207)
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        raise Hl7Rejected(f"the message is not valid {name} text", 207) from None
    return text.replace("\r\n", "\r").replace("\n", "\r"), name


def delimiters(raw: bytes) -> tuple[bytes, bytes]:
    """MSH-1 and MSH-2; raises Hl7Rejected for no MSH or delimiters a parser would misread."""
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise Hl7Rejected("the message does not begin with an MSH segment", 100)
    sep, encoding = raw[3:4], raw[4:8]
    bad = sep.isalnum() or sep in b" \r\n" or any(c in b"\r\n " for c in encoding)
    if bad or len(set(encoding + sep)) != 5 or any(bytes([c]).isalnum() for c in encoding):
        raise Hl7Rejected("MSH-1/MSH-2 do not hold five distinct delimiters", 102)
    return sep, encoding


def parse(text: str) -> hl7.Message:
    """The parsed message; raises Hl7Rejected when the parser cannot read it."""
    try:
        msg = hl7.parse(text)
        msg.segment("MSH")
    except Exception as exc:  # noqa: BLE001 - any parser failure is a rejected message
        raise Hl7Rejected(f"the message cannot be parsed: {exc}", 100) from None
    return msg


def header(msg: hl7.Message, charset: str) -> Header:
    kind = "^".join(p for p in (get(msg, "MSH", 9, 1), get(msg, "MSH", 9, 2)) if p)
    return Header(
        control_id=get(msg, "MSH", 10),
        kind=kind.upper(),
        sender=get(msg, "MSH", 3),
        facility=get(msg, "MSH", 4),
        charset=charset,
    )


def get(msg: hl7.Message, segment: str, fld: int, comp: int = 1, sub: int = 1, nth: int = 1) -> str:
    """One component of the ``nth`` such segment ("" when absent), first repetition."""
    try:
        return str(msg.extract_field(segment, nth, fld, 1, comp, sub)).strip()
    except (KeyError, IndexError):
        return ""


def has(msg: hl7.Message, segment: str) -> bool:
    return any(str(seg[0]) == segment for seg in msg)


def count(msg: hl7.Message, segment: str) -> int:
    return sum(1 for seg in msg if str(seg[0]) == segment)


# -- value conversions ---------------------------------------------------------------------


def person_name(msg: hl7.Message, segment: str, fld: int, first: int = 1, nth: int = 1) -> str:
    """An XPN (family^given^middle^suffix^prefix) or XCN (ID first) as a DICOM PN
    (family^given^middle^prefix^suffix), trailing empty components dropped."""
    family, given, middle, suffix, prefix = (
        get(msg, segment, fld, first + i, nth=nth) for i in range(5)
    )
    if family == HL7_DELETE:
        return HL7_DELETE
    parts = (_pn_part(p) for p in (family, given, middle, prefix, suffix))
    return "^".join(parts).rstrip("^")


def _pn_part(text: str) -> str:
    """A component as a PN component can hold it: no ^ = \\ (PN delimiters)."""
    return text.replace("^", " ").replace("=", " ").replace("\\", " ")


def date_time(ts: str) -> tuple[str, str]:
    """An HL7 TS/DTM (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]) as DICOM date and time."""
    digits = ts.split("+")[0].split("-")[0].split(".")[0]
    if not digits.isdigit() or len(digits) < 8:
        return "", ""
    return digits[:8], digits[8:14]


def sex(value: str) -> str:
    if value == HL7_DELETE:
        return HL7_DELETE
    return _SEXES.get(value.upper()[:1], "O") if value else ""


# -- what a message carries ---------------------------------------------------------------


def patient(msg: hl7.Message) -> dict[str, str]:
    """PID's patient as worklist/index columns; every key present, "" when not sent,
    HL7_DELETE when the sender asked for the value to go. Raises Hl7Rejected without PID-3."""
    if not has(msg, "PID"):
        raise Hl7Rejected("no PID segment", 100)
    pid = get(msg, "PID", 3)
    if not pid or pid == HL7_DELETE:
        raise Hl7Rejected("PID-3 (patient ID) is missing", 101)
    birth = get(msg, "PID", 7)
    return {
        "patient_id": pid,
        "issuer": get(msg, "PID", 3, 4),
        "patient_name": person_name(msg, "PID", 5),
        "birth_date": birth if birth == HL7_DELETE else date_time(birth)[0],
        "sex": sex(get(msg, "PID", 8)),
    }


def demographics(msg: hl7.Message) -> dict[str, str]:
    """The edit an ADT asks for: name, birth date and sex that were sent ("" for a
    field of two quotes), the patient ID not among them."""
    values = patient(msg)
    return {
        k: "" if v == HL7_DELETE else v
        for k, v in values.items()
        if k in ("patient_name", "birth_date", "sex") and v
    }


def merged_id(msg: hl7.Message) -> tuple[str, str]:
    """ADT^A40's MRG-1: the patient ID (and its issuer) that goes away."""
    old = get(msg, "MRG", 1)
    if not old:
        raise Hl7Rejected("MRG-1 (the prior patient ID) is missing", 101)
    return old, get(msg, "MRG", 1, 4)


def orders(msg: hl7.Message, stations: dict[str, str]) -> list[Order]:
    """Each ORC with its OBR (and OMI's TQ1/IPC) as worklist values. Raises
    Hl7Rejected for a missing ORC-1, an unknown order control, or an order without
    a number to find it by later."""
    person = {k: v for k, v in patient(msg).items() if v != HL7_DELETE}
    pv1 = {
        "patient_location": get(msg, "PV1", 3),
        "admission_id": get(msg, "PV1", 19),
        "referring_physician": person_name(msg, "PV1", 8, first=2),
    }
    out = []
    n = max(count(msg, "ORC"), 1)
    for i in range(1, n + 1):
        control = get(msg, "ORC", 1, nth=i).upper()
        if not control:
            raise Hl7Rejected("ORC-1 (order control) is missing", 101)
        if control not in ORDER_CONTROLS:
            raise Hl7Rejected(f"order control {control} is not handled", 207)
        out.append(Order(control, {**person, **pv1, **_request(msg, i, stations)}))
        if not out[-1].key:
            raise Hl7Rejected("the order has no placer, filler or accession number", 101)
    return out


def _request(msg: hl7.Message, i: int, stations: dict[str, str]) -> dict[str, str]:
    """OBR (and IPC, which OMI^O23 carries) of the ``i``-th order group."""
    procedure = get(msg, "OBR", 4, 2, nth=i) or get(msg, "OBR", 4, 1, nth=i)
    ts = get(msg, "TQ1", 7, nth=i) if has(msg, "TQ1") else ""
    date, time = date_time(ts or get(msg, "OBR", 27, 4, nth=i))
    modality = (get(msg, "IPC", 5, nth=i) or get(msg, "OBR", 24, nth=i)).upper()
    values = {
        "placer_order": get(msg, "ORC", 2, nth=i) or get(msg, "OBR", 2, nth=i),
        "filler_order": get(msg, "ORC", 3, nth=i) or get(msg, "OBR", 3, nth=i),
        "accession_number": get(msg, "IPC", 1, nth=i) or get(msg, "OBR", 18, nth=i),
        "requested_procedure_id": get(msg, "IPC", 2, nth=i) or get(msg, "OBR", 19, nth=i),
        "sps_id": get(msg, "IPC", 4, nth=i) or get(msg, "OBR", 20, nth=i),
        "requested_procedure_description": procedure[:64],
        "sps_description": procedure[:64],
        "modality": modality,
        "station_ae": get(msg, "IPC", 9, nth=i) or stations.get(modality, ""),
        "start_date": date,
        "start_time": time,
        "study_instance_uid": get(msg, "IPC", 3, nth=i) or get(msg, "ZDS", 1, nth=i),
        "requesting_physician": person_name(msg, "ORC", 12, first=2, nth=i)
        or person_name(msg, "OBR", 16, first=2, nth=i),
        "reason_for_procedure": get(msg, "OBR", 31, 2, nth=i) or get(msg, "OBR", 31, nth=i),
    }
    return values


def station_map(text: str) -> dict[str, str]:
    """HL7StationMap (``CT=CT01,MR=MR01``) as modality -> station AE."""
    out = {}
    for pair in text.split(","):
        if "=" in pair:
            modality, ae = pair.split("=", 1)
            out[modality.strip().upper()] = ae.strip()
    return out
