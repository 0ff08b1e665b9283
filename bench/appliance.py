"""Appliance figures (issue 4): image size, boot to READY inside the image,
idle RSS and CPU of the daemon inside it.

- boot to READY in systemd-nspawn: from starting the container to the moment
  systemd marked pacsbox@PACSBOX active (READY=1 received). The container
  shares the host's CLOCK_MONOTONIC, so the unit's ActiveEnterTimestampMonotonic
  compares with the host's clock directly. Median of a few boots.
- boot to READY in qemu (software emulation, no KVM here, so a slow upper
  bound): seconds from starting qemu until echoscu from the host is answered,
  and the guest's own kernel-start-to-READY. Off with PACSBOX_BENCH_QEMU=0.
- idle RSS (VmRSS) and idle CPU (% of one core over 10 s, no traffic) of the
  daemon in the nspawn box.

Start to READY at 1,000,000 instances is measured by the lead separately.
Needs the built image (`make image`) and root; returns {"skipped": reason}
otherwise. `python -m bench.appliance` prints the figures and writes
bench/results/appliance.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.image.boxes import (
    IMG,
    INITRD,
    KERNEL,
    OUT,
    UNIT,
    NspawnBox,
    QemuBox,
    free_port,
    instance_ini,
    not_built_reason,
    timespan,
    wait_for,
)

NSPAWN_RUNS = 3
IDLE_SECONDS = 10.0
RESULTS = Path(__file__).resolve().parent / "results" / "appliance.json"


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def image_sizes() -> dict:
    squash = OUT / "root.squashfs"
    return {
        "image_mb": _mb(IMG),
        "root_squashfs_mb": _mb(squash),
        "kernel_initrd_mb": round((KERNEL.stat().st_size + INITRD.stat().st_size) / 1e6, 1),
        "image_target_mb": 400,
    }


def _ready_monotonic(box, timeout: float = 60.0) -> float:
    """When systemd marked the daemon active (READY=1), on CLOCK_MONOTONIC."""
    import re

    def stamp():
        text = box.sh(f"systemctl show -p ActiveEnterTimestampMonotonic {UNIT}")[1]
        m = re.search(r"ActiveEnterTimestampMonotonic=(\d+)", text)
        return int(m.group(1)) if m and int(m.group(1)) > 0 else None

    return wait_for(stamp, timeout, f"{UNIT} ActiveEnterTimestampMonotonic") / 1e6


def _wait_active(box, timeout: float) -> None:
    wait_for(
        lambda: box.show(UNIT, "ActiveState")["ActiveState"] == "active", timeout, f"{UNIT} active"
    )


def _proc_cpu_seconds(box, pid: str) -> float:
    fields = box.out(f"cat /proc/{pid}/stat").rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def nspawn_figures(work: Path) -> dict:
    boots = []
    idle: dict = {}
    for i in range(NSPAWN_RUNS):
        data = work / f"data{i}"
        (data / "etc").mkdir(parents=True)
        port = free_port()
        (data / "etc" / "PACSBOX.ini").write_text(instance_ini(port), encoding="utf-8")
        box = NspawnBox(data, work / f"nspawn{i}.log", port)
        t0 = time.monotonic()
        box.start()
        try:
            _wait_active(box, 120)
            boots.append(_ready_monotonic(box) - t0)
            if i == NSPAWN_RUNS - 1:
                box.wait_booted(120)
                pid = box.show(UNIT, "MainPID")["MainPID"]
                time.sleep(2.0)  # let start-up work settle before sampling idle
                c0, w0 = _proc_cpu_seconds(box, pid), time.monotonic()
                time.sleep(IDLE_SECONDS)
                c1, w1 = _proc_cpu_seconds(box, pid), time.monotonic()
                rss_kb = next(
                    int(line.split()[1])
                    for line in box.out(f"cat /proc/{pid}/status").splitlines()
                    if line.startswith("VmRSS:")
                )
                idle = {
                    "idle_rss_mb": round(rss_kb / 1024, 1),
                    "idle_cpu_percent": round(100.0 * (c1 - c0) / (w1 - w0), 2),
                    "idle_cpu_target_percent": 1.0,
                    "watchdog_sec": timespan(box.show(UNIT, "WatchdogUSec")["WatchdogUSec"]),
                }
        finally:
            box.stop()
    return {
        "nspawn_boot_to_ready_s": round(statistics.median(boots), 2),
        "nspawn_boot_to_ready_runs_s": [round(b, 2) for b in boots],
        **idle,
    }


def qemu_figures(work: Path) -> dict:
    disk = QemuBox.make_disk(work / "disk.img")
    box = QemuBox(disk, work, free_port())
    t0 = time.monotonic()
    box.start()
    try:

        def answered():
            # qemu accepts the TCP connection itself before the guest listens:
            # bound every phase, and count any DICOM answer (even "calling AE
            # not recognized") as the daemon being READY.
            try:
                res = subprocess.run(
                    ["echoscu", "-to", "5", "-ta", "5", "-td", "5", "127.0.0.1", str(box.port)],
                    capture_output=True, text=True, timeout=30,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return False
            return res.returncode == 0 or "Association Rejected" in res.stdout + res.stderr

        wait_for(answered, 400, "the DICOM port of the VM", interval=0.5)
        first_boot = time.monotonic() - t0
        box.wait_shell(60)
        guest = _ready_monotonic(box)
        return {
            "qemu_first_boot_to_dicom_s": round(first_boot, 1),
            "qemu_kernel_to_ready_s": round(guest, 1),
            "qemu_note": "software emulation (TCG), first boot includes making the data partition",
        }
    finally:
        box.kill()


def main() -> dict:
    reason = not_built_reason(need_disk=True)
    if reason:
        return {"skipped": reason}
    out: dict = {"image": image_sizes()}
    with tempfile.TemporaryDirectory(prefix="pacsbox-bench-") as tmp:
        out["nspawn"] = nspawn_figures(Path(tmp))
        if os.environ.get("PACSBOX_BENCH_QEMU", "1") != "0":
            qdir = Path(tmp) / "qemu"
            qdir.mkdir()
            out["qemu"] = qemu_figures(qdir)
    return out


if __name__ == "__main__":
    figures = main()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=1))
