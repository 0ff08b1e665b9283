"""Power cuts under the real daemon: nothing acknowledged is lost, nothing torn is indexed.

The daemon's data folder (index and archive) is a volatile mount
(volatilefs.py). Per round: four storescu processes send into two shared
studies (WorkerProcesses = 2, so both processes write); the file system
freezes at the Nth call of one kind (an image write, its fsync, its rename,
a folder fsync, an index commit's WAL write or fdatasync, a WAL checkpoint's
write or fsync of the database file), every process of the daemon is killed
with SIGKILL, the unsynced state is dropped (sometimes letting part of it
land, torn), and the daemon starts again on a fresh mount of what survived.
Then every instance storescu saw acknowledged must be indexed and hold the
bytes sent, every indexed file must be whole, ``pacsbox check`` must be
clean.

``make test``: a handful of rounds; ``make soak`` (PACSBOX_SOAK_ROUNDS=100):
the summary goes to bench/results/soak-fs.json.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from pacsbox import meta, storage
from tests.helpers import Server, cli, poll, require_tools, write_config
from tests.powercut import ingest
from tests.powercut.mount import VolatileMount
from tests.powercut.soak import Round, Soak, rounds, startup_check

SENDERS = 4
PER_SENDER = 150
# (kind, name glob): where the power goes. Counts are calibrated by a first
# ingest that is not cut, so every drop point falls inside an ingest.
DROP_POINTS = (
    ("write", "*.part"),  # an image's bytes
    ("fsync", "*.dcm"),  # its fsync (after the rename: it has its final name)
    ("rename", "*.part"),  # .part -> final name
    ("fsyncdir", "*"),  # a study folder's fsync (or its parents')
    ("write", "*-wal"),  # an index commit
    ("fdatasync", "*-wal"),  # a commit that waits (dirty marks) or _made_durable
    ("write", "*.db"),  # a WAL checkpoint into the database file
    ("fdatasync", "*.db"),  # the checkpoint's sync
)
TORN = ("none", "subset", "prefix")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, ingest.make_corpus(folder, SENDERS, PER_SENDER, tag="fs")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A data folder with its index made and the sender's AE title allowed."""
    base = tmp_path_factory.mktemp("template")
    data = base / "data"
    ini = write_config(base / "conf", DataDirectory=str(data), LogDirectory=str(base / "log"))
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    return data


class Box:
    """One round's daemon on a volatile mount of ``backing``."""

    def __init__(self, work: Path, template: Path) -> None:
        self.work = work
        self.backing = work / "backing"
        shutil.copytree(template, self.backing)
        self.mnt = work / "mnt"
        self.ini = write_config(
            work / "conf", DataDirectory=str(self.mnt), LogDirectory=str(work / "log")
        )
        self.mount: VolatileMount | None = None
        self.server: Server | None = None
        self.boots = 0

    def power_on(self, torn: str = "none") -> float:
        """Mount and start the daemon; seconds from its start to READY."""
        self.mount = VolatileMount(self.backing, self.mnt, self.work / f"fs{self.boots}", torn)
        self.mount.start()
        self.server = Server(self.ini)
        self.server.log_path = self.work / f"serve{self.boots}.out"  # off the volatile mount
        self.boots += 1
        t0 = time.monotonic()
        self.server.start(timeout=60)
        return time.monotonic() - t0

    def cut(self, seed: int) -> dict:
        """The power cut: every daemon process killed, unsynced state dropped, unmounted."""
        procs = [psutil.Process(self.server.proc.pid)]
        procs += procs[0].children(recursive=True)
        for p in procs:
            p.send_signal(signal.SIGKILL)  # those blocked in the frozen mount die at the drop
        report = self.mount.drop(seed)
        psutil.wait_procs(procs, timeout=60)
        self.server.kill9()
        self.mount.unmount()
        return report

    def power_off(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.mount is not None:
            self.mount.unmount()


def _verify(box: Box, corpus: dict, acked: set[str]) -> tuple[list[str], list[str]]:
    """(acknowledged instances lost or changed, problems with what is indexed)."""
    problems = []
    r = cli(box.ini, "check", check=False)
    if r.returncode != 0:
        problems.append(f"pacsbox check: {r.stdout.strip()} {r.stderr.strip()}")
    db = sqlite3.connect(box.mnt / box.server.cfg.Database)
    try:
        rows = {
            sop: Path(root) / folder / name
            for sop, root, folder, name in db.execute(
                "SELECT i.sop_instance_uid, st.storage_root, st.folder, i.file_name "
                "FROM instance i JOIN series se ON se.id = i.series_id "
                "JOIN study st ON st.id = se.study_id"
            )
        }
    finally:
        db.close()
    for sop, path in rows.items():
        try:
            whole = storage.is_whole(path) and ingest.dataset_bytes(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - any unreadable indexed file is the finding
            whole = False
            problems.append(f"indexed {sop} unreadable: {exc}")
        if not whole:
            problems.append(f"indexed {sop} is torn: {path}")
    lost = []
    for stem in sorted(acked):
        sent = corpus[stem]
        path = rows.get(sent.sop_instance_uid)
        if path is None:
            lost.append(f"{sent.sop_instance_uid}: not indexed")
        elif not path.exists() or ingest.dataset_bytes(path.read_bytes()) != sent.dataset:
            lost.append(f"{sent.sop_instance_uid}: bytes differ from those sent ({path})")
    leftovers = list(box.mnt.rglob("*.part"))
    if leftovers:
        problems.append(f"temp files left: {leftovers[:3]}")
    return lost, problems


def _calibrate(tmp_path: Path, template: Path, corpus_dir: Path) -> dict[str, int]:
    """Calls of each drop point's kind during one whole ingest (no cut)."""
    box = Box(tmp_path / "calibration", template)
    try:
        box.power_on()
        before = box.mount.counts()
        folders = ingest.sender_folders(corpus_dir, box.work / "senders")
        ingest.stop_senders(
            ingest.start_senders(box.server.port, box.server.ae_title, folders, box.work), 300
        )
        after = box.mount.counts()
        assert len(ingest.acknowledged(folders)) == SENDERS * PER_SENDER
    finally:
        box.power_off()
    out = {}
    for kind, match in DROP_POINTS:
        key = f"{kind}:{ingest_class(match)}"
        out[key] = max(1, after.get(key, 0) - before.get(key, 0))
    return out


def ingest_class(match: str) -> str:
    """The counts' file kind a drop point's glob selects (volatilefs.name_class)."""
    from tests.powercut.volatilefs import name_class

    return "dir" if match == "*" else name_class(match.replace("*", "x"))


def _round(n: int, rng: random.Random, tmp_path: Path, template: Path, corpus_dir: Path,
           corpus: dict, calls: dict) -> Round:  # fmt: skip
    kind, match = DROP_POINTS[n % len(DROP_POINTS)]
    at = rng.randint(1, calls[f"{kind}:{ingest_class(match)}"])
    torn = TORN[n % len(TORN)]
    mode = "eio" if n % 5 == 4 else "block"
    box = Box(tmp_path / f"round{n}", template)
    folders = ingest.sender_folders(corpus_dir, box.work / "senders")
    try:
        box.power_on(torn)
        box.mount.arm(kind, at, match, mode)
        senders = ingest.start_senders(box.server.port, box.server.ae_title, folders, box.work)
        poll(
            lambda: box.mount.frozen() or all(p.poll() is not None for p in senders),
            180,
            what=f"round {n}: the freeze at {kind} #{at} or the end of the ingest",
        )
        frozen = box.mount.frozen()
        if frozen is None:
            box.mount.freeze()
        dropped = box.cut(seed=rng.randrange(1 << 30))
        ingest.stop_senders(senders)
        acked = ingest.acknowledged(folders)
        ready = box.power_on()
        check = startup_check(box.server.output())
        box.server.stop()
        lost, problems = _verify(box, corpus, acked)
    finally:
        box.power_off()
    point = f"{kind} {match} #{at}" + ("" if frozen else " (after the ingest)")
    details = {"torn": torn, "mode": mode, "frozen": frozen, "drop": dropped,
               "startup_check": check, "problems": problems}  # fmt: skip
    if not problems and not lost:
        shutil.rmtree(box.work, ignore_errors=True)
    return Round(n, point, len(acked), lost, check.get("torn_removed", 0), round(ready, 2), details)


def test_power_cuts_lose_no_acknowledged_image(tmp_path, template, corpus, request):
    require_tools("storescu")
    corpus_dir, sent = corpus
    count, keep = rounds("PACSBOX_SOAK_ROUNDS", 4)
    calls = _calibrate(tmp_path, template, corpus_dir)
    rng = random.Random(int(time.time()))
    soak = Soak("fs")
    try:
        for n in range(count):
            soak.add(_round(n, rng, tmp_path, template, corpus_dir, sent, calls))
    finally:
        soak.report(request.config, keep)
    bad = [r for r in soak.rounds if r.lost or r.details["problems"]]
    assert not bad, "\n".join(
        f"round {r.number} ({r.drop_point}, {r.details['torn']}, {r.details['mode']}): "
        f"lost {r.lost[:5]} problems {r.details['problems'][:5]}"
        for r in bad
    )
    assert sum(r.acknowledged for r in soak.rounds) > 0


def test_a_study_folder_an_earlier_run_left_unsynced_is_made_durable(tmp_path, template, corpus):
    """A study folder made by a run that crashed (kill -9) before its parent's
    fsync exists, but its name is not durable: the images the next run stores
    there and acknowledges must survive the power cut that follows."""
    require_tools("storescu")
    corpus_dir, sent = corpus
    box = Box(tmp_path / "box", template)
    folders = ingest.sender_folders(corpus_dir, box.work / "senders")[:1]
    study_uid = meta.parse((next(folders[0].glob("*.dcm"))).read_bytes()).attrs.study_instance_uid
    try:
        box.power_on()
        # What the crashed run left: the folders, created but never synced into their parents.
        (box.mnt / "archive" / storage.study_folder(study_uid)).mkdir(parents=True)
        ingest.stop_senders(
            ingest.start_senders(box.server.port, box.server.ae_title, folders, box.work), 120
        )
        acked = ingest.acknowledged(folders)
        assert len(acked) == PER_SENDER
        box.mount.freeze()
        box.cut(seed=1)
        box.power_on()
        box.server.stop()
        lost, problems = _verify(box, sent, acked)
    finally:
        box.power_off()
    assert not problems
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged images lost: {lost[:3]}"
