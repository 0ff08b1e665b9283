"""Power cuts of the whole appliance: qemu is killed with SIGKILL mid-ingest.

The flashable image boots in qemu (its own VM and disk file, not the shared
one: every round kills it). Storescu processes on the host send over the
forwarded port; at a random moment, or right when a burst of
acknowledgements came in, the qemu process gets SIGKILL: the guest's page
cache and every write it had not yet submitted vanish, as in a power cut.
The VM's disk file lives on the volatile mount of tests/powercut, so what
qemu wrote but the guest never flushed (a FLUSH is qemu's fdatasync of the
file) is dropped at the cut too, as a disk loses its write cache; without
it the host's page cache would keep every write the guest had submitted.
Then the same disk boots again and, from
the host: every instance acknowledged so far is retrieved with getscu (C-GET,
bit-preserving) and its data set compared with the bytes sent, and
``pacsbox check`` runs through the debug shell.

``make test``: one round. ``make soak`` (PACSBOX_QEMU_SOAK_ROUNDS=20): the
summary, with boot-to-READY after each cut, goes to bench/results/soak-qemu.json.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from pacsbox import meta
from tests.helpers import DCMTK_ENV
from tests.image.boxes import AE, BOOT_TIMEOUT, UNIT, QemuBox, free_port, not_built_reason, wait_for
from tests.image.test_nspawn import echoscu
from tests.powercut import ingest
from tests.powercut.mount import VolatileMount, fuse_missing
from tests.powercut.soak import Round, Soak, rounds, startup_check

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(not_built_reason(need_disk=True)), reason=not_built_reason(need_disk=True) or ""
    ),
]

SENDERS = 3
PER_SENDER = 40
CALLING = "STORESCU"


class CachedDisk:
    """The VM's disk file on a volatile mount: unflushed writes die with the power."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.backing = work / "backing"
        self.backing.mkdir()
        QemuBox.make_disk(self.backing / "disk.img")  # durable: made before the mount
        self.mnt = work / "mnt"
        self.path = self.mnt / "disk.img"
        self.mount: VolatileMount | None = None
        self.mounts = 0

    def power_on(self) -> None:
        self.mount = VolatileMount(self.backing, self.mnt, self.work / f"fs{self.mounts}")
        self.mount.start()
        self.mounts += 1

    def cut(self, seed: int) -> dict:
        """After qemu is gone: drop what the guest never flushed; returns the drop's report."""
        assert self.mount is not None
        report = self.mount.drop(seed)
        self.mount.unmount()
        self.mount = None
        return report

    def power_off(self) -> None:
        if self.mount is not None:
            self.mount.unmount()
            self.mount = None


def _answers(vm: QemuBox) -> bool:
    try:
        return echoscu(vm.port, CALLING).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _ready(vm: QemuBox) -> float:
    """Boot and wait until the daemon answers C-ECHO; seconds from qemu's start."""
    vm.start()
    try:
        wait_for(lambda: _answers(vm), BOOT_TIMEOUT, f"DICOM after the cut ({vm.log_path})", 0.5)
    except AssertionError as e:
        # Say why the daemon did not come back: its journal, read through the debug shell.
        try:
            vm.wait_shell(60)
            why = vm.sh(
                f"journalctl -b --no-pager -n 60 -o cat -u {UNIT}; "
                "journalctl -b --no-pager -n 40 -p warning -o short-monotonic; "
                "ls -l /var/lib/pacsbox/etc/; head -c 400 /etc/pacsbox/PACSBOX.ini",
                60,
            )[1]
        except (AssertionError, OSError, RuntimeError) as shell:
            why = f"(no debug shell either: {shell})"
        raise AssertionError(f"{e}\n{why[-6000:]}") from None
    ready = time.monotonic() - vm.started
    vm.wait_shell()
    return ready


def _retrieve(vm: QemuBox, study_uids: set[str], out: Path) -> dict[str, bytes]:
    """{SOP Instance UID: data set bytes} of every instance of these studies, by C-GET."""
    out.mkdir(parents=True, exist_ok=True)
    for uid in sorted(study_uids):
        res = subprocess.run(
            ["getscu", "-S", "+B", "-od", str(out), "-aet", CALLING, "-aec", AE,
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}",
             "127.0.0.1", str(vm.port)],
            capture_output=True, text=True, timeout=300, env=DCMTK_ENV,
        )  # fmt: skip
        assert res.returncode == 0, f"getscu of {uid}: {res.stdout[-500:]} {res.stderr[-500:]}"
    got = {}
    for f in out.iterdir():
        data = f.read_bytes()
        got[meta.parse(data).attrs.sop_instance_uid] = ingest.dataset_bytes(data)
    return got


def _kill_at(rng: random.Random, n: int, folders: list[Path], senders: list) -> str:
    """Wait for this round's moment; returns how it was chosen."""
    total = SENDERS * PER_SENDER
    if n % 2 == 0:
        target = rng.randint(1, total - 1)
        wait_for(
            lambda: (
                len(ingest.acknowledged(folders)) >= target
                or all(p.poll() is not None for p in senders)
            ),
            600,
            f"{target} acknowledgements",
            0.01,
        )
        return f"after ack #{target}"
    delay = rng.uniform(0.5, 10.0)
    deadline = time.monotonic() + delay
    wait_for(lambda: time.monotonic() >= deadline, delay + 5, "the random moment", 0.01)
    return f"at {delay:.1f} s"


def test_sigkill_of_the_vm_loses_no_acknowledged_image(tmp_path, request):
    why = fuse_missing()
    if why and os.environ.get("PACSBOX_REQUIRE_TOOLS") == "1":
        pytest.fail(why)
    if why:
        pytest.skip(why)
    count, keep = rounds("PACSBOX_QEMU_SOAK_ROUNDS", 1)
    rng = random.Random(int(time.time()))
    disk = CachedDisk(tmp_path)
    disk.power_on()
    vm = QemuBox(disk.path, tmp_path, free_port())
    soak = Soak("qemu")
    # By SOP Instance UID: every round's corpus reuses the same file stems.
    sent_all: dict[str, ingest.Sent] = {}
    acked_all: set[str] = set()
    studies: set[str] = set()
    try:
        vm.boot()
        wait_for(lambda: vm.show(UNIT, "ActiveState")["ActiveState"] == "active", 120, UNIT)
        vm.register_ae(CALLING)
        for n in range(count):
            corpus_dir = tmp_path / f"corpus{n}"
            sent = ingest.make_corpus(
                corpus_dir, SENDERS, PER_SENDER, tag=f"qemu{n}-{rng.random()}"
            )
            sent_all.update({v.sop_instance_uid: v for v in sent.values()})
            folders = ingest.sender_folders(corpus_dir, tmp_path / f"round{n}")
            for f in folders:
                studies.add(meta.parse(next(f.glob("*.dcm")).read_bytes()).attrs.study_instance_uid)
            senders = ingest.start_senders(vm.port, AE, folders, tmp_path)
            moment = _kill_at(rng, n, folders, senders)
            vm.kill()
            dropped = disk.cut(rng.randrange(1 << 30))
            ingest.stop_senders(senders)
            disk.power_on()
            acked = ingest.acknowledged(folders)
            acked_all |= {sent[stem].sop_instance_uid for stem in acked}
            ready = _ready(vm)
            journal = vm.journal(UNIT, 200)
            check = startup_check(journal)
            rc, out = vm.sh("runuser -u pacsbox -- pacsbox check", timeout=300)
            problems = [] if rc == 0 else [f"pacsbox check exited {rc}: {out.strip()[-500:]}"]
            got = _retrieve(vm, studies, tmp_path / f"got{n}")
            lost = [uid for uid in sorted(acked_all) if got.get(uid) != sent_all[uid].dataset]
            soak.add(
                Round(n, f"sigkill {moment}", len(acked), lost, check.get("torn_removed", 0),
                      round(ready, 1), {"startup_check": check, "problems": problems,
                                        "acknowledged_so_far": len(acked_all), "drop": dropped})
            )  # fmt: skip
    finally:
        vm.kill()
        disk.power_off()
        if soak.rounds:
            soak.report(request.config, keep)
    bad = [r for r in soak.rounds if r.lost or r.details["problems"]]
    assert not bad, "\n".join(
        f"round {r.number} ({r.drop_point}): lost {r.lost[:5]} problems {r.details['problems']}"
        for r in bad
    )
    assert acked_all, "no image was acknowledged before any cut"
