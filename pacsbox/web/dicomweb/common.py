"""What the DICOMweb services share: paths, content negotiation, lookups and answers.

Every route needs View (issue 19: a user without it gets 403), STOW also
Upload or Import; reads are open to the anonymous reader when the
administrator enables DicomWebAnonymous. Lookups go through the index and
the private-study rules of the web page (an object the user may not see
answers 404, like an unknown one; only the anonymous reader, who has no
View, meets them), and every read is journaled once per request at the
study level, with who read it and how they logged in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bottle

from pacsbox.db.lookup import VIEWER_ORDER
from pacsbox.db.models import Instance, Series, Study
from pacsbox.errors import NotAcceptable, NotFound
from pacsbox.web import privileges as pv
from pacsbox.web.core import Ctx

BASE = "/dicom-web"
_UID = "re:[0-9][0-9.]{0,63}"
STUDY = f"/studies/<study:{_UID}>"
SERIES = f"/series/<series:{_UID}>"
INSTANCE = f"/instances/<instance:{_UID}>"
FRAMES = "/frames/<frames:re:[0-9]{1,9}(,[0-9]{1,9}){0,999}>"
# DICOMweb hands out the whole archive to a tool, so it needs View (issue 19);
# storing also needs Upload (the word) or Import (the browser upload's).
READ = "view"
STORE = pv.Need(every=("view",), one_of=("upload", "import"))
DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype`` and its parameters."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def inner(self) -> str:
        """The type of a multipart's parts (``type=``), lower case."""
        return self.params.get("type", "").strip('"').lower()

    @property
    def transfer_syntax(self) -> str:
        return self.params.get("transfer-syntax", "").strip('"')


def _split(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def accept_ranges() -> list[MediaRange]:
    """The request's Accept header as media ranges, best first (q=0 dropped)."""
    header = bottle.request.get_header("Accept", "") or ""
    ranges = []
    for n, item in enumerate(_split(header, ",")):
        head, *rest = _split(item, ";")
        params = {}
        for p in rest:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append((-q, n, MediaRange(head.strip().lower(), params)))
    return [r for _, _, r in sorted(ranges, key=lambda t: (t[0], t[1]))]


def _covers(pattern: str, media_type: str) -> bool:
    if pattern in ("*/*", "*", media_type):
        return True
    return pattern.endswith("/*") and media_type.startswith(pattern[:-1])


def negotiate(offered: tuple[str, ...]) -> str:
    """The first offered single-part media type the Accept header takes (406 if none)."""
    ranges = accept_ranges()
    if not ranges:
        return offered[0]
    for r in ranges:
        for media_type in offered:
            if _covers(r.media_type, media_type):
                return media_type
    raise NotAcceptable(
        "cannot answer with " + (bottle.request.get_header("Accept") or "")
        + "; offered: " + ", ".join(offered)
    )  # fmt: skip


def base_url() -> str:
    """The absolute URL of /dicom-web as the client reached it (for Retrieve URLs).

    Some clients (dicomweb-client) send a Host header without the port; unless
    a proxy names the host (X-Forwarded-Host), the port is the one we answer on.
    """
    parts = bottle.request.urlparts
    netloc = parts.netloc
    env = bottle.request.environ
    port = str(env.get("SERVER_PORT", ""))
    default = "443" if parts.scheme == "https" else "80"
    if (
        ":" not in netloc.rsplit("]", 1)[-1]
        and "HTTP_X_FORWARDED_HOST" not in env
        and port not in ("", default)
    ):
        netloc += ":" + port
    return f"{parts.scheme}://{netloc}{BASE}"


def json_answer(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> bottle.HTTPResponse:
    body = json.dumps(data, separators=(",", ":"))
    return bottle.HTTPResponse(
        body=body,
        status=status,
        headers={"Content-Type": DICOM_JSON, **(headers or {})},
    )


def visible_study(p: pv.Principal, study_uid: str) -> Study:
    study = Study.get_or_none(Study.study_instance_uid == study_uid)
    if study is None or not pv.can_see_study(p, study):
        raise NotFound(f"no study {study_uid}")  # existence is not revealed
    return study


def instances(
    p: pv.Principal, study_uid: str, series_uid: str = "", instance_uid: str = ""
) -> list[Instance]:
    """The instances a retrieve names (with series and study loaded), in a viewer's order.

    Raises NotFound when the study is unknown or hidden, or nothing matches.
    """
    study = visible_study(p, study_uid)
    q = (
        Instance.select(Instance, Series, Study)
        .join(Series, on=(Instance.series == Series.id))
        .join(Study, on=(Series.study == Study.id))
        .where(Study.id == study.id)
    )
    if series_uid:
        q = q.where(Series.series_instance_uid == series_uid)
    if instance_uid:
        q = q.where(Instance.sop_instance_uid == instance_uid)
    rows = list(q.order_by(*VIEWER_ORDER))
    if not rows:
        what = instance_uid or series_uid
        raise NotFound(f"no {'instance' if instance_uid else 'series'} {what} in this study")
    return rows


def read_route(ctx: Ctx, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a DICOMweb read: View, or the anonymous reader when DicomWebAnonymous is on."""
    return ctx.page(BASE + path, privilege=READ, json_twin=False, anonymous=True)


def store_route(ctx: Ctx, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a STOW-RS route: View and Upload or Import, never anonymous."""
    return ctx.page(BASE + path, method="POST", privilege=STORE, json_twin=False)


def journal_study(ctx: Ctx, study_uid: str, what: str) -> None:
    """One journal line per request and study: who read (or stored) which study, through
    what, logged in how."""
    ident = ctx.identity()
    ctx.journal("dicomweb-" + what, study_uid, detail=ident.via if ident else "")


def instance_url(inst: Instance) -> str:
    series = inst.series
    return (
        f"{base_url()}/studies/{series.study.study_instance_uid}"
        f"/series/{series.series_instance_uid}/instances/{inst.sop_instance_uid}"
    )
