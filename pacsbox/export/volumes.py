"""Split a selection into volumes that each fit one disc.

Rule of the conformance statement and issue 6: when the selection exceeds the
medium, several volumes are made, each a complete File-set with its own
DICOMDIR. We keep a patient together when it fits one volume, else its
studies, else its series; only a series larger than a whole volume is split
by instances (logged). Volumes are filled in selection order so a study's
series stay next to each other; the last volume is the only small one.

Sizes are counted the way ISO 9660 stores them (PS3.12 / ECMA-119): each file
rounded up to 2048-byte sectors, a sector or two per directory, the exact
encoded length of every DICOMDIR record, and a fixed allowance for the system
area, descriptors, path tables and the 300 KiB padding xorriso adds at build
time and again at burn time. A test checks built ISOs against the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pacsbox.errors import MediaError
from pacsbox.export.names import SECTOR
from pacsbox.export.records import InstanceRecords

log = logging.getLogger(__name__)

ISO_FIXED_BYTES = (64 + 150 + 160) * SECTOR  # system area, descriptors, build + burn padding
DIR_BYTES = 2 * SECTOR  # one directory: its sector(s) and path table entries
ENTRY_BYTES = 48  # one file's record in its parent directory ('IM000001.;1')
ITEM_HEADER = 8  # sequence item tag + length in the DICOMDIR


def sectors(size: int) -> int:
    """Bytes a file of ``size`` occupies on an ISO 9660 medium."""
    return -(-size // SECTOR) * SECTOR


@dataclass
class Item:
    """One instance to place: its records, where its bytes come from, their size."""

    records: InstanceRecords
    source: Path  # file to copy onto the medium (the stored file or a converted copy)
    size: int
    transfer_syntax: str
    record_bytes: dict[str, int]  # encoded length of each of the 4 records


@dataclass
class VolumePlan:
    """The instances of one volume, in selection order."""

    items: list[Item] = field(default_factory=list)
    used: int = 0
    keys: set[tuple[str, ...]] = field(default_factory=set)


def _cost(plan: VolumePlan, items: Iterable[Item]) -> tuple[int, set[tuple[str, ...]]]:
    """Extra bytes ``items`` need in ``plan`` (new directories and records included)."""
    extra = 0
    new: set[tuple[str, ...]] = set()
    for it in items:
        r = it.records
        for key, kind in (
            ((r.patient_key,), "PATIENT"),
            ((r.patient_key, r.study_key), "STUDY"),
            ((r.patient_key, r.study_key, r.series_key), "SERIES"),
        ):
            if key not in plan.keys and key not in new:
                new.add(key)
                extra += DIR_BYTES + ITEM_HEADER + it.record_bytes[kind]
        extra += sectors(it.size) + ENTRY_BYTES + ITEM_HEADER + it.record_bytes["LEAF"]
    return extra, new


def _group(items: list[Item]) -> dict[str, dict[str, dict[str, list[Item]]]]:
    tree: dict[str, dict[str, dict[str, list[Item]]]] = {}
    for it in items:
        r = it.records
        tree.setdefault(r.patient_key, {}).setdefault(r.study_key, {}).setdefault(
            r.series_key, []
        ).append(it)
    return tree


def plan_volumes(items: list[Item], capacity: int, fixed: int = 0) -> list[VolumePlan]:
    """Place ``items`` in volumes of ``capacity`` bytes; ``fixed`` is per-volume extra (viewer)."""
    budget = capacity - ISO_FIXED_BYTES - DIR_BYTES - SECTOR - fixed  # DICOM/, DICOMDIR rounding
    if budget <= 0:
        raise MediaError(f"volume of {capacity} bytes is too small for even an empty disc")
    plans = [VolumePlan()]

    def add(group: list[Item]) -> bool:
        cur = plans[-1]
        extra, new = _cost(cur, group)
        if cur.used + extra > budget:
            return False
        cur.items.extend(group)
        cur.used += extra
        cur.keys |= new
        return True

    def fresh_fits(group: list[Item]) -> bool:
        return _cost(VolumePlan(), group)[0] <= budget

    def place(group: list[Item]) -> bool:
        """Whole group into the current volume or a new one; False if it fits no volume."""
        if add(group):
            return True
        if fresh_fits(group):
            if plans[-1].items:
                plans.append(VolumePlan())
            add(group)
            return True
        return False

    for studies in _group(items).values():
        if place([it for ser in studies.values() for ins in ser.values() for it in ins]):
            continue
        for series_map in studies.values():
            if place([it for ins in series_map.values() for it in ins]):
                continue
            for series_uid, instances in series_map.items():
                if place(instances):
                    continue
                log.warning(
                    "export: series %s (%d instances) exceeds one volume, split by instances",
                    series_uid,
                    len(instances),
                )
                for it in instances:
                    if not place([it]):
                        raise MediaError(
                            f"instance {it.records.sop_instance_uid} ({it.size} bytes) "
                            f"is larger than a volume of {capacity} bytes"
                        )
    return [p for p in plans if p.items]
