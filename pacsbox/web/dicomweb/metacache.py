"""The per-series cache behind WADO-RS metadata, and the thread that fills it after ingest.

A viewer asks for a series' metadata before it shows anything, so reading
every file each time (what Orthanc does) makes a 500-image series slow. The
cache is one JSON file per series under ``<DataDirectory>/dicomweb-metadata``
(named by the index's row id, never by a UID), keyed by the series' instances
with their file names, digests and sizes, so a new image, a deletion or an
edit (which rewrites the file) makes it stale without any hook in the write
path. The warmer builds it once a series has arrived, while the box is idle,
so the first viewer to open a new study does not wait for its files to be
read; a request finding it stale or missing builds it itself.
Each file is the key on one line, then the items as JSON text, so a request
answers without decoding it; Pixel Data is never inlined and its BulkDataURI
is relative, made absolute when sent, so the cache holds no host name.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from pacsbox.db import lookup
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from pacsbox.periodic import Periodic

log = logging.getLogger("pacsbox.web")
FOLDER = "dicomweb-metadata"
VERSION = 2  # of the cache's layout: a new layout is a new key
# The warmer waits for this long without any new instance in the whole box, so
# it never competes with an ingest for the CPU.
QUIET_SECONDS = 5.0
TURN_SECONDS = 2.0
BATCH = 500  # series per turn
CHECK_EVERY = 50  # instances built between two looks at whether to stop
MARK = ".warmed-upto"  # the newest instance row the warmer has covered


def _key(keys: list[tuple]) -> str:
    """Of one series' ``lookup.instance_keys`` rows."""
    h = hashlib.sha1(f"v{VERSION}".encode())
    for k in keys:
        h.update(("|".join(str(v) for v in k[2:]) + "\n").encode())
    return h.hexdigest()


def _instance_json(inst: Instance) -> dict[str, Any]:
    """One instance's data set without Pixel Data; binary values inline."""
    path = instance_path(inst)
    ds = dcmread(path, stop_before_pixels=True, force=inst.native)
    item: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=2**31)
    ts = inst.transfer_syntax_uid
    item["00083002"] = {"vr": "UI", "Value": [ts]}  # (0008,3002) Available Transfer Syntax
    if inst.rows:
        bits = inst.bits_allocated or 8
        vr = "OB" if UID(ts).is_compressed or bits <= 8 else "OW"
        series = inst.series
        item["7FE00010"] = {
            "vr": vr,  # relative: the answer puts the base URL in front (see absolute)
            "BulkDataURI": f"studies/{series.study.study_instance_uid}/series/"
            f"{series.series_instance_uid}/instances/{inst.sop_instance_uid}/bulkdata/7fe00010",
        }
    return item


def folder(data_dir: Path | str) -> Path:
    return Path(data_dir) / FOLDER


class _Stopped(Exception):
    pass


def _write_items(fh: TextIO, rows: Iterable[Instance], stop: Callable[[], bool] | None) -> None:
    """The items one at a time, so a 10,000-image series never sits in memory decoded."""
    first = True
    for n, inst in enumerate(rows):
        if stop is not None and n % CHECK_EVERY == 0 and stop():
            raise _Stopped
        try:
            item = _instance_json(inst)
        except (OSError, InvalidDicomError, ValueError) as exc:
            log.warning("metadata of %s left out: %s", inst.sop_instance_uid, exc)
            continue
        fh.write(("" if first else ",") + json.dumps(item, separators=(",", ":")))
        first = False


def series_json(
    data_dir: Path | str,
    keys: list[tuple],
    load: Callable[[], Iterable[Instance]],
    stop: Callable[[], bool] | None = None,
) -> str | None:
    """One series' metadata items as JSON text (objects joined by commas, BulkDataURIs
    relative), from the cache when ``keys`` still match it, else built from the
    instances ``load`` gives and cached; None when ``stop`` said so midway."""
    series_id = keys[0][0]
    where = folder(data_dir)
    path = where / f"{series_id}.json"
    key = _key(keys)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.readline().rstrip("\n") == key:
                return fh.read()
    except OSError:
        pass
    tmp = ""
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".tmp-")
        with os.fdopen(fd, "w+", encoding="utf-8") as fh:
            fh.write(key + "\n")
            _write_items(fh, load(), stop)
            fh.seek(0)
            fh.readline()
            text = fh.read()
        os.replace(tmp, path)
        return text
    except _Stopped:
        Path(tmp).unlink(missing_ok=True)
        return None
    except OSError as exc:  # a full disk: answer all the same, uncached
        log.warning("metadata cache of series %s not written: %s", series_id, exc)
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        out = io.StringIO()
        _write_items(out, load(), stop)
        return out.getvalue()


_URI = '"BulkDataURI":"'  # inside a JSON string a quote is escaped: only our key reads so


def absolute(text: str, base: str) -> str:
    """JSON text whose relative BulkDataURIs are made absolute under ``base``."""
    return text.replace(_URI, _URI + base.rstrip("/") + "/")


class Warmer(Periodic):
    """Builds the cache of every series that received instances, once the box is quiet.

    Where it got to is kept in a file beside the cache, so series that arrived
    before a restart are still built; on a box that never ran it, it starts at
    the newest instance (older series are built on their first request).
    """

    name = "metadata-warmer"
    interval = TURN_SECONDS

    def __init__(
        self,
        data_dir: Path | str,
        *,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        super().__init__(heartbeat)
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.quiet_seconds = quiet_seconds
        self._upto: int | None = None
        self._seen_upto = 0
        self._changed_at = clock()

    def _mark(self) -> Path:
        return folder(self.data_dir) / MARK

    def _load_mark(self) -> int:
        try:
            return int(self._mark().read_text().strip())
        except (OSError, ValueError):
            upto = lookup.newest_instance_id()
            self._save_mark(upto)
            return upto

    def _save_mark(self, upto: int) -> None:
        where = folder(self.data_dir)
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / (MARK + ".tmp")
        tmp.write_text(f"{upto}\n")
        os.replace(tmp, self._mark())

    def turn(self) -> int:
        """Build what is due; returns the series built. Safe to call by hand (tests)."""
        if self._upto is None:
            self._upto = self._load_mark()
            self._seen_upto = self._upto
        newest = lookup.newest_instance_id()
        now = self.clock()
        if newest != self._seen_upto:
            self._seen_upto, self._changed_at = newest, now
            return 0
        if newest <= self._upto or now - self._changed_at < self.quiet_seconds:
            return 0
        built = 0
        touched = lookup.series_touched_since(self._upto, BATCH)
        for series_id, series_newest in touched:
            if self._busy(newest):
                return built  # an ingest began: the rest waits for the next quiet spell
            keys = lookup.instance_keys(series_id=series_id)
            if keys:
                load = partial(lookup.series_instances, series_id)
                if series_json(self.data_dir, keys, load, partial(self._busy, newest)) is None:
                    return built  # an ingest began: this series waits for the next quiet spell
                built += 1
            self._upto = series_newest
            self._save_mark(series_newest)
            if self.heartbeat is not None:
                self.heartbeat()
        if len(touched) < BATCH:
            self._upto = newest  # rows deleted since leave gaps: nothing above is due
            self._save_mark(newest)
        if built:
            log.info("dicomweb metadata cached for %d series", built)
        return built

    def _busy(self, newest: int) -> bool:
        return self._stop.is_set() or lookup.newest_instance_id() != newest
