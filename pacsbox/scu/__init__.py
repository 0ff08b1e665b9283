"""Outgoing DICOM: C-ECHO (the web page's Ping, the self-check) and C-STORE sub-operations.

``echo`` asks a peer for C-ECHO; ``sender`` sends stored instances over an
association (C-MOVE to a destination, C-GET back to the requestor);
``convert`` turns a stored file into what a peer accepts when it does not
take the stored transfer syntax.
"""

from pacsbox.scu.associate import PROBE_VERSION_NAME, Outcome, open_association
from pacsbox.scu.convert import Decompress, convert, decompressed, stored_dataset
from pacsbox.scu.echo import EchoResult, Peer, echo, make_ae
from pacsbox.scu.sender import (
    CANNOT_CONVERT,
    MAX_CONTEXTS,
    NO_CONTEXT,
    NO_RESPONSE,
    Counts,
    Sender,
    open_store_association,
    store_contexts,
)

__all__ = [
    "CANNOT_CONVERT",
    "MAX_CONTEXTS",
    "NO_CONTEXT",
    "NO_RESPONSE",
    "PROBE_VERSION_NAME",
    "Counts",
    "Decompress",
    "EchoResult",
    "Outcome",
    "Peer",
    "Sender",
    "convert",
    "decompressed",
    "echo",
    "make_ae",
    "open_association",
    "open_store_association",
    "store_contexts",
    "stored_dataset",
]
