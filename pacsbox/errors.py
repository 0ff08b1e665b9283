"""Error classes that carry their protocol status.

Every layer raises one of these; the edges (DIMSE handlers, web routes, the
CLI) map them to a DICOM status, an HTTP status or an exit code without
guessing. Keeping the mapping on the class means a new edge cannot get it
wrong. Statuses follow the PacsOne conformance statement (C-STORE, C-FIND and
C-MOVE status tables).
"""

from __future__ import annotations


class PacsboxError(Exception):
    """Base class: an expected failure with a one-line reason for operators."""

    dimse_status: int = 0xC000  # Cannot understand / unable to process
    http_status: int = 500
    exit_code: int = 1
    # HL7 v2 ACK: MSA-1 code (AE: application error) and ERR-3 (HL7 table 0357).
    hl7_ack: str = "AE"
    hl7_error: int = 207  # application internal error


class ConfigError(PacsboxError):
    """A configuration file or value is wrong; the message names file, key and allowed values."""

    exit_code = 2


class UsageError(PacsboxError):
    """The command line or a request is malformed."""

    http_status = 400
    exit_code = 2
    hl7_error = 102  # data type error


class NotFound(PacsboxError):
    """The patient, study, series, instance or AE asked for does not exist."""

    http_status = 404
    exit_code = 3
    hl7_error = 204  # unknown key identifier


class Hl7Rejected(PacsboxError):
    """An HL7 message refused as a whole (ACK AR): a message type or event not
    handled, a sender not allowed, a required field missing, an unknown charset."""

    http_status = 400
    hl7_ack = "AR"

    def __init__(self, message: str, hl7_error: int = 207) -> None:
        super().__init__(message)
        self.hl7_error = hl7_error


class CannotUnderstand(PacsboxError):
    """The data set cannot be parsed at all (C-STORE C000)."""

    dimse_status = 0xC000
    http_status = 400


class DatasetMismatch(PacsboxError):
    """The data set does not match its SOP class or lacks its UIDs (C-STORE A900)."""

    dimse_status = 0xA900
    http_status = 400


class OutOfResources(PacsboxError):
    """The file cannot be written: disk full, archive unwritable (C-STORE A700)."""

    dimse_status = 0xA700
    http_status = 507


class DatabaseError(PacsboxError):
    """The index could not be updated; the file written for it has been removed (A701)."""

    dimse_status = 0xA701
    http_status = 503


class OutcomeUnknown(DatabaseError):
    """The row may be committed but is not known to be (the daemon went away while
    recording, the index journal's fsync failed): the file stays (A701)."""


class DuplicateRejected(PacsboxError):
    """DuplicatePolicy=reject and a different object with this SOP Instance UID is stored.

    0xA7F0 is in the "Refused: out of resources" range (A7xx) that storage SCUs
    treat as a failure to retry later rather than a malformed object.
    """

    dimse_status = 0xA7F0
    http_status = 409


class MoveDestinationUnknown(PacsboxError):
    """C-MOVE destination is not in the AE table (A801)."""

    dimse_status = 0xA801
    http_status = 404


class IdentifierMismatch(PacsboxError):
    """C-FIND/C-MOVE/C-GET identifier does not match the SOP class (A900)."""

    dimse_status = 0xA900
    http_status = 400


class UnableToProcess(PacsboxError):
    """A query or retrieve that cannot be processed (C000)."""

    dimse_status = 0xC000
    http_status = 400


class PeerError(PacsboxError):
    """A remote AE could not be reached, went away, or answered a query or retrieve
    with a failure status (HTTP 502: the fault is the other box's or the network's)."""

    http_status = 502


class NotOffered(PacsboxError):
    """A well-formed request for something this box does not do (HTTP 501)."""

    http_status = 501


class NotAcceptable(PacsboxError):
    """The object cannot be given in the form asked for (HTTP 406)."""

    http_status = 406


class AccessDenied(PacsboxError):
    """An AE, user or session is not allowed to do this."""

    dimse_status = 0xA700
    http_status = 403
    exit_code = 4


class MediaError(PacsboxError):
    """A medium cannot be read, written or verified (no disc, disc too small, write error)."""

    http_status = 500
    exit_code = 5
