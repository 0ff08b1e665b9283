"""Modalities for the power-cut tests: DCMTK storescu processes and what they saw acknowledged.

Each sender is one storescu over one association with ``+rn``: it renames a
file to ``.done`` only after our success response, so the ``.done`` files are
exactly the instances the box acknowledged. Senders share studies, so two
associations write into one study folder at once (and share its fsync).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from pacsbox import meta
from tests.helpers import DCMTK_ENV
from tests.synth import make_instance

STUDY_ROOT = "1.2.826.0.1.3680043.10.1395.16.4."
# Image sizes (rows = columns) in turn: most fit one write, some take several.
SIDES = (32, 64, 64, 128, 300)


@dataclass(frozen=True)
class Sent:
    sop_instance_uid: str
    dataset: bytes  # the data set bytes as the box stores them (after its own meta header)


def dataset_bytes(data: bytes) -> bytes:
    """The data set of a Part-10 file (what the box keeps byte for byte)."""
    return data[meta.parse(data).dataset_offset :]


def make_corpus(folder: Path, senders: int, per_sender: int, tag: str = "") -> dict[str, Sent]:
    """``senders`` folders of ``per_sender`` images (made once, reused); two senders per study.

    Returns {file stem: Sent}. ``tag`` makes UIDs differ between corpora.
    """
    index = folder / "corpus.json"
    if index.exists():
        known = json.loads(index.read_text())
        return {
            stem: Sent(sop, (folder / "data" / f"{stem}.ds").read_bytes())
            for stem, sop in known.items()
        }
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    known: dict[str, str] = {}
    out: dict[str, Sent] = {}
    for s in range(senders):
        study = f"{STUDY_ROOT}{zlib.crc32(tag.encode())}.{s // 2}"
        sender = folder / f"sender{s}"
        sender.mkdir()
        for i in range(per_sender):
            side = SIDES[(i + s) % len(SIDES)]
            data = make_instance(
                patient_id=f"CUT{s // 2}",
                study_uid=study,
                series_uid=f"{study}.{s % 2 + 1}",
                sop_uid=f"{study}.{s % 2 + 1}.{i + 1}",
                instance_number=i + 1,
                series_number=s % 2 + 1,
                rows=side,
                columns=side,
                pixel_seed=1000 * s + i + 1,
            )
            stem = f"s{s}i{i:04d}"
            (sender / f"{stem}.dcm").write_bytes(data)
            sent = Sent(meta.parse(data).attrs.sop_instance_uid, dataset_bytes(data))
            (folder / "data" / f"{stem}.ds").write_bytes(sent.dataset)
            known[stem] = sent.sop_instance_uid
            out[stem] = sent
    index.write_text(json.dumps(known))
    return out


def sender_folders(corpus_dir: Path, round_dir: Path) -> list[Path]:
    """Fresh copies (hard links) of the corpus's sender folders for one round."""
    out = []
    for src in sorted(corpus_dir.glob("sender*")):
        dst = round_dir / src.name
        dst.mkdir(parents=True)
        for f in src.iterdir():
            os.link(f, dst / f.name)
        out.append(dst)
    return out


def start_senders(port: int, called_ae: str, folders: list[Path], log_dir: Path) -> list:
    """One storescu per folder; retries what failed before (``.bad``), as a modality would."""
    procs = []
    for folder in folders:
        for bad in folder.glob("*.bad"):
            bad.rename(bad.with_suffix(""))
        files = sorted(str(p) for p in folder.glob("*.dcm"))
        if not files:
            continue
        log = open(log_dir / f"{folder.name}.log", "ab")
        procs.append(
            subprocess.Popen(
                ["storescu", "+rn", "-nh", "-aet", "STORESCU", "-aec", called_ae,
                 "127.0.0.1", str(port), *files],
                env=DCMTK_ENV,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )  # fmt: skip
        log.close()
    return procs


def acknowledged(folders: list[Path]) -> set[str]:
    """Stems of the files storescu saw acknowledged (renamed ``.done``)."""
    return {p.name[: -len(".dcm.done")] for f in folders for p in f.glob("*.dcm.done")}


def stop_senders(procs: list, timeout: float = 60.0) -> None:
    """Wait for senders whose association ended; kill any still hanging on."""
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
