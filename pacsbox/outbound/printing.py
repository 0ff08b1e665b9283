"""Print jobs (SCU-7): selected images of a series or study on films of a DICOM printer.

A print is a queue job like a forward: accepted only for an AE of the table
with an address and a selection that holds images, so a typing mistake is an
error now; the runner renders each image to 8 bits (``pacsbox.pixels``, the
web page's window) and hands the films to ``scu.printer``. A printer that
cannot be reached is retried with backoff until ``DeliveryGiveUpHours``; one
that rejects us for good or answers with a failure status fails the job at
once (some films may be out already), with the status in the job's one-line
reason; the user retries it from the queue page. The payload names its images with the
queue's selection keys, so the disk purge keeps them until the job ends.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pacsbox.db import aes, journal, lookup, queue
from pacsbox.db.lookup import VIEWER_ORDER
from pacsbox.db.models import Instance, Series, Study
from pacsbox.errors import CannotUnderstand, NotFound, UsageError
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable, wake
from pacsbox.scu.film import Film, film

MAX_IMAGES = 200  # one job's films; more is a mistake or many jobs


def _instances(payload: dict[str, Any]) -> list[Instance]:
    """The payload's images in print order: series by number, images by number."""
    where = None
    if payload.get("instances"):
        where = Instance.sop_instance_uid.in_(payload["instances"])
    elif payload.get("series"):
        where = Series.series_instance_uid.in_(payload["series"])
    elif payload.get("studies"):
        where = Series.study.in_(
            Study.select(Study.id).where(Study.study_instance_uid.in_(payload["studies"]))
        )
    if where is None:
        return []
    return list(Instance.select(Instance, Series).join(Series).where(where).order_by(*VIEWER_ORDER))


def submit(
    printer: str,
    *,
    studies: list[str] | None = None,
    series: list[str] | None = None,
    instances: list[str] | None = None,
    layout: str = "1x1",
    film_size: str = "14INX17IN",
    orientation: str = "PORTRAIT",
    copies: int = 1,
    owner: str = "",
    address: str = "",
) -> int:
    """Queue a print and journal who asked; returns the job id. Raises NotFound (an
    unknown printer, nothing stored) and UsageError (no address, a bad film, nothing
    named, too many images)."""

    spec = film(layout, film_size, orientation, copies)
    aes.ae_address(printer)
    payload: dict[str, Any] = {
        "studies": list(studies or []),
        "series": list(series or []),
        "instances": list(instances or []),
    }
    if not any(payload.values()):
        raise UsageError("name what to print: a study, a series or images")
    found = _instances(payload)
    if not found:
        raise NotFound("nothing stored matches what was named to print")
    if len(found) > MAX_IMAGES:
        raise UsageError(f"{len(found)} images: at most {MAX_IMAGES} per print job")
    payload["film"] = asdict(spec)
    label = f"{len(found)} images to {printer}, {spec.layout.split(chr(92))[-1]}, {spec.film_size}"
    # A refused print is not sent again by itself (films may have come out already):
    # the user retries it from the queue page; an unreachable printer is retried.
    job_id = queue.submit("print", printer, payload, owner=owner, label=label,
                          total=len(found), retries=0)  # fmt: skip
    journal.record("print", owner, address, target=printer,
                   detail=f"job {job_id}: {label}: {[i.sop_instance_uid for i in found]}"[:2000])  # fmt: skip
    wake()
    return job_id


def handle(ctl: Control) -> Outcome:
    """Render the job's images and print them; one attempt."""
    # Imported here: queueing a print (the CLI) needs no DICOM libraries.
    from pacsbox.outbound.deliver import peer_of
    from pacsbox.pixels import eight_bit
    from pacsbox.scu.printer import print_images

    job = ctl.job
    found = _instances(job.payload)
    if not found:
        return refused("nothing stored matches the selection any more")
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    images, skipped = [], 0
    total = 2 * len(found)  # rendering, then printing
    for n, inst in enumerate(found, 1):
        native_ts = inst.transfer_syntax_uid if inst.native else None
        try:
            pixels, _ = eight_bit(lookup.instance_path(inst), native_ts=native_ts)
        except (CannotUnderstand, OSError):
            skipped += 1  # a report or a document among the images: nothing to print
            continue
        images.append(pixels)
        ctl.progress(n, total)
    if not images:
        return refused("none of the selected objects has pixel data to print")
    result = print_images(
        ctl.cfg.ApplicationEntityTitle,
        peer,
        images,
        Film(**job.payload["film"]),
        timeout=float(ctl.cfg.DimseTimeout),
        progress=lambda k: ctl.progress(len(found) + k * len(found) // len(images), total),
    )
    message = result.message + (f"; {skipped} objects without pixels left out" if skipped else "")
    if result.status is None:
        return unreachable(message)
    if result.status != 0:
        return refused(message)
    ctl.progress(total, total)
    return done(message)
