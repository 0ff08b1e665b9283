"""WADO-RS metadata (PS3.18 10.4.1.1.2): DICOM JSON with bulk data URIs, from the per-series
cache of ``metacache``, so a 500-image series does not read 500 files per request.
"""

from __future__ import annotations

from typing import Any

from pacsbox.db.models import Instance
from pacsbox.errors import NotFound
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb.common import (
    BASE,
    DICOM_JSON,
    INSTANCE,
    READ,
    SERIES,
    STUDY,
    base_url,
    instances,
    journal_read,
    json_answer,
    negotiate,
)
from pacsbox.web.dicomweb.metacache import series_metadata


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
        for item in series_metadata(ctx.cfg.data_dir, s.id, group):
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
    journal_read(ctx, study, "metadata")
    return json_answer(answer)


def register(ctx: Ctx) -> None:
    @ctx.page(BASE + STUDY + "/metadata", privilege=READ, json_twin=False)
    def study_metadata(ident, study):
        return metadata(ctx, ident, study)

    @ctx.page(BASE + STUDY + SERIES + "/metadata", privilege=READ, json_twin=False)
    def series_meta(ident, study, series):
        return metadata(ctx, ident, study, series)

    @ctx.page(BASE + STUDY + SERIES + INSTANCE + "/metadata", privilege=READ, json_twin=False)
    def instance_metadata(ident, study, series, instance):
        return metadata(ctx, ident, study, series, instance)
