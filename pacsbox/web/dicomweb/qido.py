"""QIDO-RS (PS3.18 10.6): searches answered from the index through the one matcher.

Query parameters are DICOM keys by keyword or tag (``db.match.resolve``); a
value list ``a,b`` is the DICOM list ``a\\b``; the identifier is matched and
answered by ``db.query`` exactly as a C-FIND is, plus the private-study rule
of the web search. Keys of a lower level match "has one such child"
(``/studies?Modality=CT``). Fuzzy person-name matching is not offered, and
a search that asks for it is told so in a Warning header.
"""

from __future__ import annotations

from collections.abc import Iterable

import bottle

from pacsbox.db.match import IMAGE, KEYS, RANK, SERIES, STUDY, Condition, match, resolve
from pacsbox.db.query import SERVER_KEYS, STUDY_ROOT, Query, find
from pacsbox.errors import UsageError
from pacsbox.web import privileges as pv
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb.common import (
    DICOM_JSON,
    base_url,
    journal_study,
    json_answer,
    negotiate,
    read_route,
)
from pacsbox.web.dicomweb.common import (
    SERIES as SERIES_PATH,
)
from pacsbox.web.dicomweb.common import (
    STUDY as STUDY_PATH,
)

# PS3.18 tables 10.6.3-3 to 10.6.3-5: what every answer carries (the ones the
# index holds; Timezone Offset From UTC is never kept, so never answered).
STUDY_KEYS = (
    "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
    "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)  # fmt: skip
SERIES_KEYS = (
    "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)  # fmt: skip
INSTANCE_KEYS = (
    "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber", "Rows",
    "Columns", "BitsAllocated", "NumberOfFrames",
)  # fmt: skip
RESERVED = {"limit", "offset", "fuzzymatching", "includefield"}
MAX_RESULTS = 10000  # per answer; more are asked for with offset (and told so)
_LEVEL_NAME = {STUDY: "studies", SERIES: "series", IMAGE: "instances"}


def _int_param(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {value!r}") from None
    if n < 0:
        raise UsageError(f"{name} must not be negative")
    return n


def _defaults(level: str, study_uid: str, series_uid: str) -> list[str]:
    """Table 10.6.3-3..5, with the parents' keys when the search is not inside a parent."""
    keys: list[str] = []
    if level == STUDY or not study_uid:
        keys += STUDY_KEYS
    if level in (SERIES, IMAGE) and (level == SERIES or not series_uid):
        keys += SERIES_KEYS
    if level == IMAGE:
        keys += INSTANCE_KEYS
    keys += ["StudyInstanceUID"] + (["SeriesInstanceUID"] if level != STUDY else [])
    return keys


def _returnable(level: str) -> Iterable[str]:
    return (kw for kw, attr in KEYS.items() if RANK[attr.level] <= RANK[level])


def build_query(
    p: pv.Principal, level: str, study_uid: str = "", series_uid: str = "", *, pn_ci: bool
) -> tuple[Query, int | None, int, list[str]]:
    """The parsed search: (query, limit, offset, warnings). Raises UsageError/UnableToProcess."""
    conditions: list[Condition] = []
    include: list[str] = []
    limit: int | None = None
    offset = 0
    warnings: list[str] = []
    for name, raw in bottle.request.query.decode().allitems():
        value = raw.strip()
        if name == "limit":
            limit = _int_param("limit", value)
        elif name == "offset":
            offset = _int_param("offset", value)
        elif name == "fuzzymatching":
            if value not in ("true", "false"):
                raise UsageError("fuzzymatching must be true or false")
            if value == "true":
                warnings.append("fuzzymatching is not supported")
        elif name == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item == "all":
                    include += _returnable(level)
                elif item:
                    include.append(resolve(item))
        else:
            keyword = resolve(name)
            if keyword not in KEYS and not value:
                include.append(keyword)  # an empty key asks for the attribute back
                continue
            conditions.append(Condition(keyword, value.replace(",", "\\")))
    if study_uid:
        conditions.append(Condition("StudyInstanceUID", study_uid))
    if series_uid:
        conditions.append(Condition("SeriesInstanceUID", series_uid))
    found = match(conditions, level, pn_case_insensitive=pn_ci)  # 400 for unknown keys
    wanted = _defaults(level, study_uid, series_uid) + [c.keyword for c in conditions] + include
    returnable = set(_returnable(level))
    return_keys, other = [], []
    for kw in dict.fromkeys(wanted):
        if kw in SERVER_KEYS:
            other.append(kw)
        elif kw in returnable:
            return_keys.append(kw)
    q = Query(
        model=STUDY_ROOT,
        level=level,
        conditions=[*found.conditions, pv.study_filter(p)],
        return_keys=return_keys,
        other_keys=other,
        matched_keys=found.matched,
    )
    return q, limit, offset, warnings


def _retrieve_url(level: str, item: dict) -> str:
    def uid(tag: str) -> str:
        return str(item.get(tag, {}).get("Value", [""])[0])

    url = f"{base_url()}/studies/{uid('0020000D')}"
    if level in (SERIES, IMAGE):
        url += f"/series/{uid('0020000E')}"
    if level == IMAGE:
        url += f"/instances/{uid('00080018')}"
    return url


def search(
    ctx: Ctx, ident: Identity, level: str, study_uid: str = "", series_uid: str = ""
) -> bottle.HTTPResponse:
    negotiate((DICOM_JSON, "application/json"))
    pn_ci = bool(ctx.cfg.PersonNameCaseInsensitive)
    q, limit, offset, warnings = build_query(
        ident.principal, level, study_uid, series_uid, pn_ci=pn_ci
    )
    cap = MAX_RESULTS if limit is None else min(limit, MAX_RESULTS)
    if limit is not None and limit > MAX_RESULTS:
        warnings.append(f"limit lowered to {MAX_RESULTS}")
    answers = []
    for ds in find(q, ae_title=ctx.cfg.ApplicationEntityTitle, limit=cap + 1, offset=offset):
        del ds.QueryRetrieveLevel
        item = ds.to_json_dict()
        item["00081190"] = {"vr": "UR", "Value": [_retrieve_url(level, item)]}
        answers.append(item)
    if len(answers) > cap:
        answers = answers[:cap]
        if limit is None or limit > MAX_RESULTS:
            warnings.append(
                "The number of results exceeded the maximum supported by the server. "
                "Additional results can be requested."
            )
    host = bottle.request.urlparts.netloc
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 {host}: "{w}"' for w in warnings)
    journal_study(ctx, study_uid, f"search-{_LEVEL_NAME[level]}")
    return json_answer(answers, headers=headers)


def register(ctx: Ctx) -> None:
    @read_route(ctx, "/studies")
    def studies(ident):
        return search(ctx, ident, STUDY)

    @read_route(ctx, "/series")
    def all_series(ident):
        return search(ctx, ident, SERIES)

    @read_route(ctx, "/instances")
    def all_instances(ident):
        return search(ctx, ident, IMAGE)

    @read_route(ctx, STUDY_PATH + "/series")
    def study_series(ident, study):
        return search(ctx, ident, SERIES, study)

    @read_route(ctx, STUDY_PATH + "/instances")
    def study_instances(ident, study):
        return search(ctx, ident, IMAGE, study)

    @read_route(ctx, STUDY_PATH + SERIES_PATH + "/instances")
    def series_instances(ident, study, series):
        return search(ctx, ident, IMAGE, study, series)
