"""Recovery: make the files on disk and the index agree again.

The start-up check looks at the folders written since the last checkpoint
(``db.dirty``), ``full_check`` at every folder of every archive root, and
``rebuild`` refills an emptied index from the files. Each is the write path
run over files already on disk: a file without a row is indexed, never in
place of an indexed one. Replaced and conflicting files wait in the holding
folder for HoldingDays.

Every function works on the index its caller opened (an ``Archive``).
``archive`` imports this module, never the other way round.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pacsbox import meta, storage
from pacsbox.config import Config
from pacsbox.db import dirty, lookup, rows
from pacsbox.db import index as idx
from pacsbox.db.models import Instance
from pacsbox.errors import CannotUnderstand, PacsboxError

# Its lines are the archive's: operators read a repair as part of the write path.
log = logging.getLogger("pacsbox.archive")

Progress = Callable[[int, int], None]


@dataclass
class CheckReport:
    folders: int = 0
    files_seen: int = 0
    parts_removed: int = 0
    parts_restored: int = 0  # renames a crash undid, put back
    torn_removed: int = 0  # files a crash cut short before their fsync (never acknowledged)
    interrupted_rows: int = 0  # rows of stores never acknowledged, removed
    indexed: int = 0
    duplicates_removed: int = 0
    held: int = 0
    unreadable: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # SOP Instance UIDs

    def summary(self) -> str:
        return (
            f"{self.folders} folders, {self.files_seen} files: {self.indexed} indexed, "
            f"{self.parts_removed} temp files removed, {self.parts_restored} renames completed, "
            f"{self.torn_removed} torn files removed, "
            f"{self.interrupted_rows} rows of interrupted stores removed, "
            f"{self.duplicates_removed} duplicate files "
            f"removed, {self.held} moved to holding, {len(self.unreadable)} unreadable, "
            f"{len(self.missing_files)} index rows without a file"
        )


def startup_check(cfg: Config, progress: Progress | None = None) -> CheckReport:
    """Make the folders written since the last checkpoint consistent with the index.

    Run before any worker writes: it clears every process's marks.
    """
    folders = dirty.dirty_folders()
    report = _check_folders(cfg, folders, progress, repair=True, interrupted=True)
    dirty.clear_dirty(folders, every_process=True)
    purge_holding(cfg)
    if (
        report.indexed
        or report.parts_removed
        or report.missing_files
        or report.held
        or report.parts_restored
        or report.interrupted_rows
        or report.torn_removed
    ):
        log.warning("start-up check: %s", report.summary())
    else:
        log.info("start-up check: %s", report.summary())
    return report


def full_check(
    cfg: Config, *, repair: bool = False, progress: Progress | None = None
) -> CheckReport:
    """Every folder of every archive root against the index (``pacsbox check``)."""
    folders: list[tuple[str, str]] = []
    for root in lookup.archive_roots(cfg.archive_dir):
        for study_dir in storage.iter_study_folders(root):
            folders.append((str(root), f"{study_dir.parent.name}/{study_dir.name}"))
    known = set(folders)
    folders.extend(loc for loc in lookup.study_folders() if loc not in known)
    return _check_folders(cfg, folders, progress, repair=repair)


def rebuild(cfg: Config, progress: Progress | None = None) -> CheckReport:
    """Rebuild the whole index from the files (the AE table is kept)."""
    idx.delete_everything()
    report = full_check(cfg, repair=True, progress=progress)
    log.info("index rebuilt: %s", report.summary())
    return report


# -- the holding folder -----------------------------------------------------------


def holding_dir_today(cfg: Config) -> Path:
    return cfg.holding_dir / dt.date.today().strftime("%Y%m%d")


def purge_holding(cfg: Config) -> int:
    """Delete replaced files older than HoldingDays."""
    root = cfg.holding_dir
    if not root.is_dir():
        return 0
    cutoff = (dt.date.today() - dt.timedelta(days=cfg.HoldingDays)).strftime("%Y%m%d")
    removed = 0
    for day in root.iterdir():
        if day.is_dir() and day.name.isdigit() and day.name < cutoff:
            shutil.rmtree(day, ignore_errors=True)
            removed += 1
    return removed


def holds(existing: Instance, chunks: list[bytes]) -> bool:
    """Does the indexed instance's file hold exactly these bytes?"""
    return storage.same_content(
        existing.digest, lookup.instance_path(existing), storage.digest(chunks), chunks
    )


# -- one folder at a time ---------------------------------------------------------


def _check_folders(
    cfg: Config,
    folders: list[tuple[str, str]],
    progress: Progress | None,
    *,
    repair: bool,
    interrupted: bool = False,
) -> CheckReport:
    """``interrupted``: these folders were being written when the box went
    down (the start-up check). A store's record commits while its file and
    folder fsyncs run (``commit.alongside``), so a crash may leave a file
    torn under its final name (its name's CRC tells), a row whose rename
    never reached the disk, or a row without a file: each a store never
    acknowledged."""
    sync = bool(cfg.SyncWrites)
    report = CheckReport(folders=len(folders))
    for n, (root, folder) in enumerate(folders, 1):
        path = Path(root) / folder
        indexed = lookup.indexed_names(root, folder)
        on_disk = {p.name: p for p in storage.stored_files(path)}
        if interrupted:
            _remove_torn(on_disk, report, repair=repair, sync=sync)
        by_stem = {storage.stem_of(name): name for name in indexed}
        for part in storage.leftover_parts(path):
            name = by_stem.get(storage.stem_of(part.name), "")
            if interrupted and name in indexed and name not in on_disk:
                if _restore_part(part, path / name, indexed[name], sync=sync):
                    report.parts_restored += 1
                    on_disk[name] = path / name
                    continue
            report.parts_removed += 1
            if repair:
                storage.remove_file(part, sync=sync)
        report.files_seen += len(on_disk)
        for name, sop in indexed.items():
            if name in on_disk:
                continue
            if interrupted:
                _drop_interrupted(sop, path / name)
                report.interrupted_rows += 1
                continue
            report.missing_files.append(sop)
            log.error("index row without file: SOP Instance %s (%s)", sop, path / name)
        for name, file_path in on_disk.items():
            if name in indexed:
                continue
            _adopt(cfg, file_path, root, folder, report, repair=repair)
        if progress:
            progress(n, len(folders))
    return report


def _remove_torn(
    on_disk: dict[str, Path], report: CheckReport, *, repair: bool, sync: bool
) -> None:
    for name, path in list(on_disk.items()):
        try:
            whole = storage.is_whole(path)
        except OSError as exc:
            log.warning("start-up check: cannot read %s: %s", path, exc)
            continue
        if whole:
            continue
        del on_disk[name]  # its row, if any, goes as a row without a file
        report.torn_removed += 1
        log.warning(
            "start-up check: removed %s, cut short by the crash before its store was acknowledged",
            path,
        )
        if repair:
            storage.remove_file(path, sync=sync)


def _restore_part(part: Path, final: Path, sop_uid: str, *, sync: bool) -> bool:
    """Put back a rename that a crash undid, if the temp file holds the indexed bytes."""
    inst = lookup.find_instance(sop_uid)
    try:
        data = part.read_bytes()
    except OSError:
        return False
    if inst is None or inst.file_size != len(data) or inst.digest != storage.digest([data]):
        return False
    part.rename(final)
    if sync:
        storage.fsync_dir(final.parent)
    log.warning("start-up check: completed the rename of SOP Instance %s (%s)", sop_uid, final)
    return True


def _drop_interrupted(sop_uid: str, path: Path) -> None:
    inst = lookup.find_instance(sop_uid)
    if inst is not None:
        idx.delete_instance(inst)
    log.warning(
        "start-up check: removed the index row of SOP Instance %s, whose store was "
        "interrupted before its file %s was on disk (never acknowledged)",
        sop_uid,
        path,
    )


def _adopt(
    cfg: Config, path: Path, root: str, folder: str, report: CheckReport, *, repair: bool
) -> None:
    """Index a file found on disk without a row; never let it replace an indexed one."""
    sync = bool(cfg.SyncWrites)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if storage.named_digest(path.name) not in (None, storage.digest([data])):
            raise CannotUnderstand("torn: its bytes differ from the CRC-32 in its name")
        parsed = meta.parse(data)
    except (OSError, PacsboxError) as exc:
        report.unreadable.append(str(path))
        log.warning("unreadable file in archive: %s (%s)", path, exc)
        return
    attrs = parsed.attrs
    existing = lookup.find_instance(attrs.sop_instance_uid)
    if existing is not None:
        if not repair:
            report.held += 1
            return
        if holds(existing, [data]):
            storage.remove_file(path, sync=sync)
            report.duplicates_removed += 1
        else:
            storage.hold(path, holding_dir_today(cfg), sync=sync)
            storage.remove_file(path, sync=sync)
            report.held += 1
        return
    report.indexed += 1
    if not repair:
        return
    f = rows.StoredFile(
        root, folder, path.name, len(data), storage.digest([data]), not parsed.has_meta
    )
    try:
        idx.record_instance(attrs, f, policy="keep-first", private=cfg.NewStudiesPrivate)
    except rows.LocationChanged as moved:
        target = Path(moved.storage_root) / moved.folder
        storage.ensure_dir(target, sync)
        shutil.move(path, target / path.name)
        f = rows.StoredFile(moved.storage_root, moved.folder, path.name, f.size, f.digest, f.native)
        idx.record_instance(attrs, f, policy="keep-first", private=cfg.NewStudiesPrivate)
