"""Run one import: every file a medium offers goes through the archive's store().

The same function serves ``pacsbox import PATH``, the udev-started unit, the
watch folder and the web upload, so they report alike: imported, already
present, rejected with a one-line reason per file. ``store`` is the archive's
one write path (``Archive.store``, or a partial of it binding ``source=``);
this module never writes a file itself.

Per-file failures (not DICOM, truncated, refused by the archive) are listed
and the import goes on. A full disk stops it: every further file would fail
the same way, and the report says so (``aborted``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pacsbox.errors import DatabaseError, OutOfResources, PacsboxError
from pacsbox.media.safety import DEFAULT_LIMITS, Limits, Rejected, check_dicom
from pacsbox.media.sources import Item, open_source

log = logging.getLogger("pacsbox.media")

IMPORTED = {"stored", "replaced"}
PRESENT = {"duplicate", "kept-first"}
MAX_DB_ERRORS_IN_A_ROW = 3
# Control characters, line separators and lone surrogates (undecodable bytes of a
# file name): what could break a report line or the terminal printing it.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` with those characters escaped, so one file stays one report line.

    File names and reasons come from the medium (a DICOMDIR record, a ZIP
    entry, a file name); a newline or a terminal escape in one must not
    forge or garble lines of the report, the log or the terminal.
    """
    return _NOT_ONE_LINE.sub(lambda m: repr(m.group())[1:-1], text)


class StoreResultLike(Protocol):
    """Read-only, so archive's frozen StoreResult is one."""

    @property
    def outcome(self) -> str: ...
    @property
    def sop_instance_uid(self) -> str: ...
    @property
    def study_instance_uid(self) -> str: ...


StoreFn = Callable[[bytes], StoreResultLike]


@dataclass
class ImportProgress:
    """Where an import is; the CLI draws a bar from it, the daemon a status line."""

    source: str
    done: int
    total: int
    current: str
    imported: int
    present: int
    rejected: int

    def line(self) -> str:
        return (
            f"importing {self.source}: {self.done}/{self.total} files, {self.imported} imported,"
            f" {self.present} already present, {self.rejected} rejected"
        )


@dataclass
class FileOutcome:
    name: str
    reason: str = ""  # why rejected; empty otherwise
    sop_instance_uid: str = ""
    study_instance_uid: str = ""


@dataclass
class ImportReport:
    """The end of an import: what came in, what was there already, what was refused and why."""

    source: str
    kind: str = ""  # folder, dicomdir, zip, file, device, none
    imported: list[FileOutcome] = field(default_factory=list)
    already_present: list[FileOutcome] = field(default_factory=list)
    rejected: list[FileOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    aborted: str | None = None  # the import stopped early (disk full, medium unreadable)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Not aborted: every file offered was looked at."""
        return self.aborted is None

    @property
    def study_uids(self) -> list[str]:
        seen = dict.fromkeys(
            f.study_instance_uid
            for f in self.imported + self.already_present
            if f.study_instance_uid
        )
        return list(seen)

    def summary(self) -> str:
        text = (
            f"{self.source}: {len(self.imported)} imported, {len(self.already_present)} already"
            f" present, {len(self.rejected)} rejected"
        )
        if self.study_uids:
            text += f" ({len(self.study_uids)} studies)"
        if self.aborted:
            text += f"; stopped: {self.aborted}"
        return text

    def lines(self) -> list[str]:
        """The report for a terminal or a reason file: notes, each rejection, the summary."""
        out = list(self.notes)
        out += [f"rejected {f.name}: {f.reason}" for f in self.rejected]
        out.append(self.summary())
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["summary"] = self.summary()
        d["study_uids"] = self.study_uids
        return d

    def merge(self, other: ImportReport) -> None:
        self.imported += other.imported
        self.already_present += other.already_present
        self.rejected += other.rejected
        self.notes += other.notes
        self.seconds += other.seconds
        if other.aborted and not self.aborted:
            self.aborted = other.aborted


class _Abort(Exception):
    pass


def run_import(
    path: Path,
    store: StoreFn,
    *,
    progress: Callable[[ImportProgress], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ImportReport:
    """Import a folder, mounted medium, DICOMDIR, ZIP or single Part-10 file.

    Never raises for bad content: a path that cannot be opened gives a report
    with ``aborted`` set; each bad file is a line in ``rejected``.
    """
    started = time.monotonic()
    report = ImportReport(source=str(path))
    try:
        source = open_source(Path(path), limits)
    except Rejected as e:
        report.kind = "none"
        report.aborted = one_line(str(e))
        log.warning("import %s: %s", path, e)
        return report
    with source:
        report.kind = source.kind
        report.notes += [one_line(n) for n in source.notes]
        log.info("import %s: %s, %d files", path, source.kind, len(source.items))
        _import_items(source.items, store, report, progress, limits)
    report.seconds = time.monotonic() - started
    log.info("import %s", report.summary())
    return report


def run_import_files(
    paths: Iterable[Path],
    store: StoreFn,
    *,
    progress: Callable[[ImportProgress], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str = "upload",
) -> ImportReport:
    """Import several files (Part-10 files or ZIPs, e.g. a web upload) into one report."""
    total = ImportReport(source=source, kind="files")
    for p in paths:
        part = run_import(Path(p), store, progress=progress, limits=limits)
        if part.kind == "none":  # the file itself could not be opened: a rejection, not a stop
            part.rejected.append(FileOutcome(Path(p).name, part.aborted or "unreadable"))
            part.aborted = None
        for f in part.imported + part.already_present + part.rejected:
            if part.kind in ("file",):
                f.name = Path(p).name
            elif part.kind == "zip" and f.name != Path(p).name:
                f.name = f"{Path(p).name}:{f.name}"
        total.merge(part)
        if total.aborted:
            break
    return total


def _import_items(
    items: list[Item],
    store: StoreFn,
    report: ImportReport,
    progress: Callable[[ImportProgress], None] | None,
    limits: Limits,
) -> None:
    db_errors = 0
    for n, item in enumerate(items, 1):
        try:
            db_errors = _import_one(item, store, report, limits, db_errors)
        except _Abort as e:
            report.aborted = str(e)
            log.error("import %s stopped: %s", report.source, e)
            return
        finally:
            if progress is not None:
                progress(
                    ImportProgress(
                        report.source,
                        n,
                        len(items),
                        item.name,
                        len(report.imported),
                        len(report.already_present),
                        len(report.rejected),
                    )
                )


def _import_one(
    item: Item, store: StoreFn, report: ImportReport, limits: Limits, db_errors: int
) -> int:
    """Import one item; return the count of database errors in a row."""
    if item.reason is not None or item.read is None:
        _reject(report, item.name, item.reason or "not readable")
        return db_errors
    try:
        data = item.read()
        check_dicom(data, limits)
    except Rejected as e:
        _reject(report, item.name, str(e))
        return db_errors
    try:
        res = store(data)
    except OutOfResources as e:
        _reject(report, item.name, str(e))
        raise _Abort(f"archive cannot store more ({e})") from None
    except DatabaseError as e:
        _reject(report, item.name, f"database error ({e})")
        if db_errors + 1 >= MAX_DB_ERRORS_IN_A_ROW:
            raise _Abort(f"database errors on {MAX_DB_ERRORS_IN_A_ROW} files in a row") from None
        return db_errors + 1
    except PacsboxError as e:
        _reject(report, item.name, str(e) or type(e).__name__)
        return 0
    except Exception as e:  # a bug in a lower layer must not lose the rest of the medium
        log.exception("import %s: storing %s failed", report.source, item.name)
        _reject(report, item.name, f"internal error ({type(e).__name__}: {e})")
        return 0
    outcome = FileOutcome(
        one_line(item.name),
        sop_instance_uid=str(getattr(res, "sop_instance_uid", "") or ""),
        study_instance_uid=str(getattr(res, "study_instance_uid", "") or ""),
    )
    if res.outcome in PRESENT:
        report.already_present.append(outcome)
    else:
        report.imported.append(outcome)
    log.debug("import %s: %s %s", item.name, res.outcome, outcome.sop_instance_uid)
    return 0


def _reject(report: ImportReport, name: str, reason: str) -> None:
    outcome = FileOutcome(one_line(name), one_line(reason))
    report.rejected.append(outcome)
    log.info("import %s: rejected %s: %s", report.source, outcome.name, outcome.reason)
