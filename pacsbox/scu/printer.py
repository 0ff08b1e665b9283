"""Basic Grayscale and Basic Color Print Management SCU (SCU-7): films to a DICOM printer.

One association per print, under the Meta SOP class the images need (Color
when a colour image is selected and the printer takes it; else Grayscale,
colour images turned to luminance). Per film (PS3.4 H.4): N-CREATE the Film
Session (copies), N-CREATE a Film Box (display format, film size,
orientation), which answers with its Image Boxes; N-SET each Image Box with
an 8-bit image (``pacsbox.pixels``, the web page's window); N-ACTION print
the Film Box; N-DELETE it. More images than one film holds make more films
of the same session, which is deleted at the end. Never raises for the
printer's sake: the result says what happened, in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import
    BasicColorImageBox,
    BasicColorPrintManagementMeta,
    BasicFilmBox,
    BasicFilmSession,
    BasicGrayscaleImageBox,
    BasicGrayscalePrintManagementMeta,
)

from pacsbox.scu.associate import open_association
from pacsbox.scu.echo import Peer, make_ae
from pacsbox.scu.film import Film

log = logging.getLogger("pacsbox.scu")


REJECTED = -1  # Printed.status of an association the printer rejected for good


@dataclass
class Printed:
    """What happened: ``status`` 0 printed, None when the printer could not be reached
    (try again later), else its failure status or REJECTED; ``films`` printed; a
    one-line message."""

    status: int | None
    message: str
    films: int = 0


class _Refused(Exception):
    """A printer's failure status on one message (the job is refused, not retried)."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what}: status {status:04X}")
        self.status = status


def _gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    grey: np.ndarray = np.clip(np.rint(pixels.astype(np.float32) @ weights), 0, 255).astype(
        np.uint8
    )
    return grey


def _image_item(pixels: np.ndarray, color: bool) -> Dataset:
    """A Basic Grayscale/Color Image Sequence item (PS3.4 H.4.3.1): 8 bits, colour
    by plane as the Color Image Box asks."""
    img = Dataset()
    img.Rows, img.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    img.PixelAspectRatio = [1, 1]
    img.BitsAllocated, img.BitsStored, img.HighBit = 8, 8, 7
    img.PixelRepresentation = 0
    if color:
        rgb = pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=-1)
        img.SamplesPerPixel = 3
        img.PhotometricInterpretation = "RGB"
        img.PlanarConfiguration = 1
        img.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    else:
        img.SamplesPerPixel = 1
        img.PhotometricInterpretation = "MONOCHROME2"
        img.PixelData = np.ascontiguousarray(_gray(pixels)).tobytes()
    return img


def _ok(rsp: Dataset | None, what: str) -> None:
    if rsp is None or "Status" not in rsp:
        raise ConnectionError(f"no answer to {what}")
    status = int(rsp.Status)
    if status != 0 and (status & 0xF000) != 0xB000:  # B6xx: warnings, printed anyway
        raise _Refused(status, what)


def _print_films(
    assoc: Association,
    meta: str,
    color: bool,
    images: Sequence[np.ndarray],
    spec: Film,
    progress: Callable[[int], None],
) -> int:
    session = Dataset()
    session.NumberOfCopies = spec.copies
    session.PrintPriority = "MED"
    session.MediumType = "PAPER"
    session.FilmDestination = "MAGAZINE"
    # Our own instance UIDs (PS3.7 10.1.5: the SCU may supply them), so no answer
    # needs reading for them.
    session_uid = generate_uid()
    rsp, _ = assoc.send_n_create(session, BasicFilmSession, session_uid, meta_uid=meta)
    _ok(rsp, "N-CREATE Film Session")
    box_class = BasicColorImageBox if color else BasicGrayscaleImageBox
    films = 0
    done = 0
    try:
        for start in range(0, len(images), spec.boxes):
            box = Dataset()
            box.ImageDisplayFormat = spec.layout
            box.FilmOrientation = spec.orientation
            box.FilmSizeID = spec.film_size
            ref = Dataset()
            ref.ReferencedSOPClassUID = BasicFilmSession
            ref.ReferencedSOPInstanceUID = session_uid
            box.ReferencedFilmSessionSequence = [ref]
            box_uid = generate_uid()
            rsp, attrs = assoc.send_n_create(box, BasicFilmBox, box_uid, meta_uid=meta)
            _ok(rsp, "N-CREATE Film Box")
            boxes = list(attrs.get("ReferencedImageBoxSequence", [])) if attrs else []
            if len(boxes) < min(spec.boxes, len(images) - start):
                raise _Refused(0x0110, "N-CREATE Film Box gave too few Image Boxes")
            for n, pixels in enumerate(images[start : start + spec.boxes]):
                ib = Dataset()
                ib.ImageBoxPosition = n + 1
                item = _image_item(pixels, color)
                if color:
                    ib.BasicColorImageSequence = [item]
                else:
                    ib.BasicGrayscaleImageSequence = [item]
                rsp, _ = assoc.send_n_set(
                    ib, box_class, boxes[n].ReferencedSOPInstanceUID, meta_uid=meta
                )
                _ok(rsp, f"N-SET Image Box {n + 1}")
                done += 1
                progress(done)
            rsp, _ = assoc.send_n_action(None, 1, BasicFilmBox, box_uid, meta_uid=meta)
            _ok(rsp, "N-ACTION print Film Box")
            films += 1
            _ok(assoc.send_n_delete(BasicFilmBox, box_uid, meta_uid=meta), "N-DELETE Film Box")
    finally:
        if assoc.is_established:
            assoc.send_n_delete(BasicFilmSession, session_uid, meta_uid=meta)
    return films


def print_images(
    calling_ae: str,
    peer: Peer,
    images: Sequence[np.ndarray],
    spec: Film,
    *,
    timeout: float = 30.0,
    progress: Callable[[int], None] = lambda _n: None,
) -> Printed:
    """Print ``images`` (8-bit arrays from ``pixels.eight_bit``) on films of ``spec``."""
    if not images:
        return Printed(0x0110, "nothing to print")
    want_color = any(p.ndim == 3 for p in images)
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(BasicGrayscalePrintManagementMeta)
    if want_color:
        ae.add_requested_context(BasicColorPrintManagementMeta)
    where = f"{peer.title} ({peer.host}:{peer.port})"
    try:
        assoc, outcome = open_association(ae, calling_ae, peer, "print")
    except (OSError, ValueError, RuntimeError) as exc:
        return Printed(None, f"{where}: cannot connect: {exc}")
    if not assoc.is_established or not outcome.ok:
        if assoc.is_established:
            assoc.release()
        # A permanent rejection (a wrong AE title, an AE that is no printer) will not
        # pass by itself: no retries.
        permanent = outcome.result == "rejected" and (
            outcome.reason.startswith("1/") or outcome.reason == "no-context"
        )
        return Printed(REJECTED if permanent else None, f"{where}: {outcome.words()}")
    accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
    color = want_color and BasicColorPrintManagementMeta in accepted
    meta = BasicColorPrintManagementMeta if color else BasicGrayscalePrintManagementMeta
    if meta not in accepted:
        assoc.release()
        return Printed(0x0122, f"{where} does not accept Basic Grayscale Print Management")
    try:
        films = _print_films(assoc, meta, color, images, spec, progress)
    except _Refused as exc:
        return Printed(exc.status, f"{where}: {exc}")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        return Printed(None, f"{where}: {exc or 'the association ended'}")
    finally:
        if assoc.is_established:
            assoc.release()
    kind = "colour" if color else "grayscale"
    log.info("printed %d images on %d %s film(s) to %s", len(images), films, kind, peer.title)
    return Printed(0, f"{len(images)} images on {films} {kind} film(s), {spec.layout}, "
                      f"{spec.film_size}, {spec.copies} copies, printed by {peer.title}", films)  # fmt: skip
