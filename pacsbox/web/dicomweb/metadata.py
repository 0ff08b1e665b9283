"""WADO-RS metadata (PS3.18 10.4.1.1.2): DICOM JSON with bulk data URIs, from a per-series cache.

A viewer asks for a series' metadata before it shows anything, so reading
every file each time (what Orthanc does) makes a 500-image series slow. The
cache is one JSON file per series under ``<DataDirectory>/dicomweb-metadata``
(named by the index's row id, never by a UID), built lazily on the first
request and rebuilt when its key changes: the series' instances with their
file names, digests and sizes, so a new image, a deletion or an edit (which
rewrites the file) invalidates it without any hook in the write path.
Pixel Data is never inlined: its BulkDataURI is added when the answer is
sent, so the cache holds no host name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance, Series
from pacsbox.errors import NotFound
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb.common import (
    DICOM_JSON,
    INSTANCE,
    SERIES,
    STUDY,
    base_url,
    instances,
    journal_study,
    json_answer,
    negotiate,
    read_route,
)

log = logging.getLogger("pacsbox.web")
FOLDER = "dicomweb-metadata"
VERSION = 1  # of the cache's layout: a new layout is a new key


def _key(rows: list[Instance]) -> str:
    h = hashlib.sha1(f"v{VERSION}".encode())
    for i in rows:
        h.update(
            f"{i.id}|{i.sop_instance_uid}|{i.file_name}|{i.digest}|{i.file_size}|"
            f"{i.transfer_syntax_uid}\n".encode()
        )
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
        item["7FE00010"] = {"vr": vr}  # the BulkDataURI is added when sent
    return item


def _build(series: Series, rows: list[Instance]) -> list[dict[str, Any]]:
    out = []
    for inst in rows:
        try:
            out.append(_instance_json(inst))
        except (OSError, InvalidDicomError, ValueError) as exc:
            log.warning("metadata of %s left out: %s", inst.sop_instance_uid, exc)
    return out


def series_metadata(ctx: Ctx, series: Series, rows: list[Instance]) -> list[dict[str, Any]]:
    """The cached metadata of ``rows`` (all of one series), rebuilt when stale."""
    folder = Path(ctx.cfg.data_dir) / FOLDER
    path = folder / f"{series.id}.json"
    key = _key(rows)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            items: list[dict[str, Any]] = cached["instances"]
            return items
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    items = _build(series, rows)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "instances": items}, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("metadata cache of series %s not written: %s", series.id, exc)
        Path(tmp).unlink(missing_ok=True)
    return items


def metadata(ctx: Ctx, ident: Identity, study: str, series: str = "", instance: str = "") -> Any:
    negotiate((DICOM_JSON, "application/json"))
    rows = instances(ident.principal, study, series)
    by_series: dict[int, list[Instance]] = {}
    for inst in rows:
        by_series.setdefault(inst.series.id, []).append(inst)
    answer = []
    root = base_url()
    for group in by_series.values():
        s = group[0].series
        for item in series_metadata(ctx, s, group):
            uid = item.get("00080018", {}).get("Value", [""])[0]
            if instance and uid != instance:
                continue
            pixel = item.get("7FE00010")
            if pixel is not None:
                pixel["BulkDataURI"] = (
                    f"{root}/studies/{study}/series/{s.series_instance_uid}"
                    f"/instances/{uid}/bulkdata/7fe00010"
                )
            answer.append(item)
    if instance and not answer:
        raise NotFound(f"no instance {instance} in this series")
    journal_study(ctx, study, "metadata")
    return json_answer(answer)


def register(ctx: Ctx) -> None:
    @read_route(ctx, STUDY + "/metadata")
    def study_metadata(ident, study):
        return metadata(ctx, ident, study)

    @read_route(ctx, STUDY + SERIES + "/metadata")
    def series_meta(ident, study, series):
        return metadata(ctx, ident, study, series)

    @read_route(ctx, STUDY + SERIES + INSTANCE + "/metadata")
    def instance_metadata(ident, study, series, instance):
        return metadata(ctx, ident, study, series, instance)
