"""WADO-RS metadata (PS3.18 10.4.1.1.2): DICOM JSON with bulk data URIs, from the per-series
cache of ``metacache``, so a 500-image series does not read 500 files per request.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import bottle

from pacsbox.db import lookup
from pacsbox.errors import NotFound
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb.common import (
    DICOM_JSON,
    INSTANCE,
    SERIES,
    STUDY,
    base_url,
    journal_study,
    negotiate,
    read_route,
    visible_study,
)
from pacsbox.web.dicomweb.metacache import absolute, series_json


def metadata(ctx: Ctx, ident: Identity, study: str, series: str = "", instance: str = "") -> Any:
    negotiate((DICOM_JSON, "application/json"))
    keys = lookup.instance_keys(visible_study(ident.principal, study).id, series)
    if not keys:
        raise NotFound(f"no series {series} in this study" if series else "an empty study")
    by_series: dict[int, list[tuple]] = {}
    for k in keys:
        by_series.setdefault(k[0], []).append(k)
    texts = []
    for series_id, group in by_series.items():
        if instance and all(k[3] != instance for k in group):
            continue
        text = series_json(ctx.cfg.data_dir, group, partial(lookup.series_instances, series_id))
        if text:
            texts.append(text)
    body = absolute("[" + ",".join(texts) + "]", base_url())
    if instance:
        items = [i for i in json.loads(body) if _sop(i) == instance]
        if not items:
            raise NotFound(f"no instance {instance} in this series")
        body = json.dumps(items, separators=(",", ":"))
    journal_study(ctx, study, "metadata")
    return bottle.HTTPResponse(body=body, headers={"Content-Type": DICOM_JSON})


def _sop(item: dict) -> str:
    return str(item.get("00080018", {}).get("Value", [""])[0])


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
