"""The ACK every HL7 message gets: MSA-1 AA/AE/AR, the reason in MSA-3 and an ERR.

Built with the library's ``create_ack`` when the message could be parsed (it
copies the sender, trigger event and control ID); a message that could not
be parsed gets the same shape from a skeleton with an empty MSA-2.
"""

from __future__ import annotations

import datetime as dt

import hl7
from hl7.util import generate_message_control_id

_ERRORS = {  # HL7 table 0357
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    200: "Unsupported message type",
    201: "Unsupported event code",
    204: "Unknown key identifier",
    207: "Application internal error",
}
MSA3_MAX = 80  # MSA-3 is ST(80) up to v2.5


def build(msg: hl7.Message | None, code: str, text: str, error: int, application: str) -> str:
    """The ACK as text (segments joined by CR); ``error`` 0 with AA writes no ERR."""
    if msg is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        control = generate_message_control_id()
        skeleton = f"MSH|^~\\&|{application}||||{stamp}||ACK|{control}|P|2.5\rMSA|{code}|"
        ack = hl7.parse(skeleton)
    else:
        ack = msg.create_ack(code, application=application, facility="")
    segments = [str(seg) for seg in ack]
    fs, cs = ("|", "^") if msg is None else (msg.separators[1], msg.separators[3])
    if text:
        segments[1] += fs + ack.escape(text[:MSA3_MAX])
    if error:
        err = cs.join((str(error), _ERRORS.get(error, ""), "HL70357"))
        severity = "W" if code == "AA" else "E"
        segments.append(fs.join(("ERR", "", "", err, severity, "", "", "", ack.escape(text))))
    return "\r".join(segments)
