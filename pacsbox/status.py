"""The daemon's status snapshot: one small JSON file that everything else reads.

The daemon rewrites the snapshot about once a second; the front panel,
``pacsbox status`` and the web page only read it. A file (not a socket or a
query) keeps the readers working when the daemon is hung or gone: a missing,
unreadable or stale snapshot *is* the "not running" signal. Writes are atomic
(temp file + rename) so a reader never sees half a file.

Schema, version 1 (every key always present; ``None`` where unknown)::

    version            1
    updated            ISO 8601 local time with offset of this write
    pid                daemon process id
    ae_title           our AE title
    port               DICOM port
    web_url            URL of the admin page, or None when disabled
    addresses          non-loopback IPv4 then IPv6 addresses (local_addresses())
    state              "starting" | "ok" | "degraded" | "stopping" | "stopped"
    studies_total, instances_total, studies_today    (today = local calendar day)
    last_study         {"received", "study_uid", "calling_ae", "modality", "description"} | None
    associations_active
    disk               [{"path", "percent", "free_bytes", "total_bytes"}] per archive folder
    storage_full       True when C-STORE answers A700 because nothing can be purged
    data_disk_problem  None, or why the data partition is missing/unwritable
    jobs               [{"kind": import|export|burn|purge|..., "label", "done", "total", "state"}]
    last_error         {"time", "message"} | None

Patient names and IDs are deliberately absent: a front panel is public.
So is the first-start setup code (pacsbox.setupcode): it is a secret and
this file is world-readable, so the front panel passes it to the formatters
itself (``setup_code=``) and it never reaches the snapshot.
The readers also use a synthetic state "not-running" (see not_running()).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import tempfile
import textwrap
import unicodedata
from pathlib import Path
from typing import Any

VERSION = 1
STALE_AFTER = 15.0  # seconds without a rewrite before the daemon counts as not running
STATES = ("starting", "ok", "degraded", "stopping", "stopped", "not-running")
DEFAULTS: dict[str, Any] = {
    "version": VERSION,
    "updated": None,
    "pid": None,
    "ae_title": "",
    "port": 0,
    "web_url": None,
    "addresses": [],
    "state": "starting",
    "studies_total": 0,
    "instances_total": 0,
    "studies_today": 0,
    "last_study": None,
    "associations_active": 0,
    "disk": [],
    "storage_full": False,
    "data_disk_problem": None,
    "jobs": [],
    "last_error": None,
    "last_purge": None,
    "reason": None,
}


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def make_snapshot(**fields: Any) -> dict[str, Any]:
    """A complete snapshot: defaults, this process's pid and the time, then ``fields``.

    Raises KeyError for a key outside the schema, so a typo cannot slip by.
    """
    unknown = set(fields) - set(DEFAULTS)
    if unknown:
        raise KeyError("unknown status keys: " + ", ".join(sorted(unknown)))
    snap: dict[str, Any] = json.loads(json.dumps(DEFAULTS))  # deep copy of the lists
    snap.update(pid=os.getpid(), updated=now_iso())
    snap.update(fields)
    return snap


def not_running(reason: str, **fields: Any) -> dict[str, Any]:
    """The snapshot readers show when the daemon's own is missing or stale."""
    snap = make_snapshot(state="not-running", reason=reason, pid=None, **fields)
    return snap


def write_snapshot(path: str | os.PathLike[str], snapshot: dict[str, Any]) -> None:
    """Replace ``path`` atomically. No fsync: the file is rewritten every second
    (an SD card would wear) and a torn file after power loss reads as "not running"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(snapshot, indent=1, sort_keys=True, default=str).encode()
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # the front panel may run as another user
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _age(snap: dict[str, Any], now: dt.datetime) -> float | None:
    try:
        updated = dt.datetime.fromisoformat(str(snap["updated"]))
        if updated.tzinfo is None:
            updated = updated.astimezone()
        return (now - updated).total_seconds()
    except (KeyError, ValueError, TypeError):
        return None


def _pid_gone(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, owned by another user
        return False
    return False


def check_snapshot(
    path: str | os.PathLike[str], max_age: float = STALE_AFTER, now: dt.datetime | None = None
) -> tuple[dict[str, Any] | None, str]:
    """(snapshot, "") when the daemon is live, else (None, why not) in words for an operator."""
    now = now or dt.datetime.now().astimezone()
    try:
        snap = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no status file {path}"
    except (OSError, ValueError) as exc:
        return None, f"status file {path} unreadable ({type(exc).__name__})"
    if not isinstance(snap, dict) or not isinstance(snap.get("version"), int):
        return None, f"status file {path} is not a pacsbox snapshot"
    snap = {**DEFAULTS, **snap}
    if snap["state"] == "stopped":
        return None, f"stopped at {_short_time(snap['updated'])}"
    age = _age(snap, now)
    if age is None:
        return None, f"status file {path} has no valid time"
    if abs(age) > max_age:
        return None, f"no update since {_short_time(snap['updated'])}"
    if _pid_gone(snap["pid"]):
        return None, f"process {snap['pid']} has exited"
    return snap, ""


def read_snapshot(
    path: str | os.PathLike[str], max_age: float = STALE_AFTER, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """The live snapshot, or None when missing, unreadable, stale or its process is gone."""
    return check_snapshot(path, max_age, now)[0]


def data_dir_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the data folder cannot hold the archive, or None when it can."""
    p = Path(path)
    if not p.exists():
        return f"data disk missing: {p} does not exist"
    if not p.is_dir():
        return f"data disk missing: {p} is not a folder"
    if not os.access(p, os.R_OK | os.X_OK):
        return f"data disk unreadable: {p}"
    return None


# -- addresses ----------------------------------------------------------------


def _addresses_ip() -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=2, check=True
    ).stdout
    v4: list[str] = []
    v6: list[str] = []
    for link in json.loads(out):
        if "LOOPBACK" in link.get("flags", []) or "UP" not in link.get("flags", ["UP"]):
            continue
        for a in link.get("addr_info", []):
            if a.get("scope") != "global" or a.get("tentative") or a.get("dadfailed"):
                continue
            (v4 if a.get("family") == "inet" else v6).append(a["local"])
    return v4 + v6


def _addresses_kernel() -> list[str]:
    import fcntl
    import struct

    v4: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:  # SIOCGIFADDR
                req = struct.pack("256s", name.encode()[:15])
                raw = fcntl.ioctl(s.fileno(), 0x8915, req)
            except OSError:
                continue
            addr = socket.inet_ntoa(raw[20:24])
            if not addr.startswith("127."):
                v4.append(addr)
    v6: list[str] = []
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as fh:
        for line in fh:
            hexaddr, _, _, scope, *_ = line.split()
            if scope == "00":  # global scope only
                v6.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr)))
    return v4 + v6


def local_addresses() -> list[str]:
    """The box's non-loopback addresses, IPv4 first; ["127.0.0.1"] when it has none."""
    for probe in (_addresses_ip, _addresses_kernel):
        try:
            found = list(dict.fromkeys(probe()))
        except (OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError):
            continue
        if found:
            return found
    return ["127.0.0.1"]


# -- formatting ---------------------------------------------------------------


def _ascii(text: Any) -> str:
    """Printable ASCII only: character LCDs have no other glyphs."""
    norm = unicodedata.normalize("NFKD", str(text))
    return "".join(
        c if 32 <= ord(c) < 127 else ("" if unicodedata.combining(c) else "?") for c in norm
    )


def _short_time(iso: Any, with_date: bool = False) -> str:
    try:
        t = dt.datetime.fromisoformat(str(iso))
    except (ValueError, TypeError):
        return "?"
    today = dt.datetime.now(t.tzinfo).date() if t.tzinfo else dt.date.today()
    if with_date or t.date() != today:
        return t.strftime("%Y-%m-%d %H:%M")
    return t.strftime("%H:%M")


def human_bytes(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1000 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1000
    return "?"


def _job_progress(job: dict[str, Any]) -> str:
    done, total = job.get("done") or 0, job.get("total")
    if total:
        return f"{done}/{total} {100 * done // max(total, 1)}%"
    return f"{done}"


def _fit(long: str, short: str, width: int) -> str:
    return long if len(long) <= width else short


def web_address(snap: dict[str, Any]) -> str | None:
    """The web page's URL as a browser on the network must type it.

    A daemon listening on every address (0.0.0.0, the appliance's default)
    reports that as its host; the box's first address replaces it.
    """
    url = snap.get("web_url")
    if not url:
        return None
    scheme, _, rest = str(url).partition("://")
    host, sep, port = rest.rstrip("/").rpartition(":")
    addresses = [str(a) for a in snap.get("addresses") or []]
    if sep and host in ("0.0.0.0", "[::]", "::", "") and addresses:
        first = addresses[0]
        host = f"[{first}]" if ":" in first else first
        return f"{scheme}://{host}:{port}/"
    return str(url)


def _setup_lines(code: str, width: int, rows: int) -> list[str]:
    """The setup code in as few lines as the display allows, labelled when there is room."""
    if len("Setup " + code) <= width:
        return ["Setup " + code]
    shown = code if len(code) <= width else code.replace("-", "")  # 8 columns: no dash
    if rows == 1:
        return [shown]
    return ["Setup code" if width >= 10 else "Setup", shown]


def alerts(snap: dict[str, Any], width: int = 80) -> list[str]:
    """The loud lines, most serious first, worded to fit ``width``."""
    out = []
    if snap.get("state") == "not-running":
        out.append(_fit("PACSBOX NOT RUNNING", "NOT RUNNING", width))
    if snap.get("data_disk_problem"):
        out.append(_fit("DATA DISK PROBLEM", "DATA DISK FAULT", width))
    if snap.get("storage_full"):
        out.append("STORAGE FULL")
    if snap.get("state") in ("degraded", "starting", "stopping"):
        out.append(f"PACSBOX {snap['state'].upper()}")
    return [line[:width] for line in out]


def _blocks(snap: dict[str, Any], width: int) -> list[list[str]]:
    """Groups of short lines that belong on the same screen when they fit."""

    def wrap(text: str, max_lines: int = 2) -> list[str]:
        return textwrap.wrap(_ascii(text), width, max_lines=max_lines, placeholder="~") or [""]

    snap = {**DEFAULTS, **snap}
    blocks: list[list[str]] = []
    if snap["state"] == "not-running":
        blocks.append(
            [_fit("PACSBOX NOT RUNNING", "NOT RUNNING", width), *wrap(snap["reason"] or "", 3)]
        )
    if snap["data_disk_problem"]:
        problem = _fit("DATA DISK PROBLEM", "DATA DISK FAULT", width)
        blocks.append([problem, *wrap(snap["data_disk_problem"], 3)])
    if snap["storage_full"]:
        blocks.append(["STORAGE FULL", "no new images"])
    first = f"{snap['ae_title']} OK" if snap["state"] == "ok" else f"AE {snap['ae_title']}"
    addresses = [str(a) for a in snap["addresses"]]
    ports = f"DICOM {snap['port']}"
    blocks.append([first, *addresses[:1], ports])
    if snap["web_url"]:
        web = str(web_address(snap)).split("://", 1)[-1].rstrip("/")
        blocks[-1].append(f"Web {web}" if len(web) + 4 <= width else web)
    if snap["state"] == "not-running":
        blocks.append(addresses[1:3])
        return [[_ascii(line)[:width] for line in b] for b in blocks if b]
    archive = []
    for d in snap["disk"][:2]:
        line = f"Disk {d.get('percent', 0):.0f}% {human_bytes(d.get('free_bytes'))} free"
        archive.append(line if len(line) <= width else line.removesuffix(" free"))
    archive.append(f"Today {snap['studies_today']} All {snap['studies_total']}")
    last = snap["last_study"]
    if last:
        archive.append(f"Last {_short_time(last.get('received'))} {last.get('modality') or ''}")
        archive.append(f"{last.get('calling_ae') or ''} {last.get('description') or ''}".strip())
    else:
        archive.append("Last study: none")
    blocks.append(archive)
    for job in snap["jobs"]:
        blocks.append(
            [
                f"{job.get('kind', 'job')} {job.get('state', '')}".strip().capitalize(),
                _job_progress(job),
                *wrap(job.get("label") or "", 1),
            ]
        )
    err = snap["last_error"]
    if err:
        blocks.append([f"Error {_short_time(err.get('time'))}", *wrap(err.get("message", ""), 3)])
    blocks.append(addresses[1:3])  # further addresses (often long IPv6) last
    return [[_ascii(line)[:width] for line in b] for b in blocks if b]


def format_lines(
    snapshot: dict[str, Any], width: int = 20, rows: int = 4, *, setup_code: str | None = None
) -> list[str]:
    """Every short line for a small display, each at most ``width`` characters, unpaged.

    ``rows`` is accepted for symmetry with screens(); paging happens there.
    """
    setup = _setup_lines(setup_code, width, rows) if setup_code else []
    return setup + [line for block in _blocks(snapshot, width) for line in block]


def screens(
    snapshot: dict[str, Any], width: int = 20, rows: int = 4, *, setup_code: str | None = None
) -> list[list[str]]:
    """The short lines paged into screens of at most ``rows`` lines.

    Blocks (identity, archive, each job, the error) start a new screen when they
    do not fit the current one. When something is wrong and the display has 4 or
    more rows, the first alert is pinned on top of every other screen; on smaller
    displays the alert screen comes back between the others. A ``setup_code``
    (first start, root has no password) is pinned the same way below the alert
    when it fits one line of a display with 4 or more rows, else it is a
    screen of its own shown between every other screen.
    """
    rows = max(1, rows)
    blocks = _blocks(snapshot, width)
    loud = alerts({**DEFAULTS, **snapshot}, width)
    pins = [loud[0]] if loud and rows >= 4 else []
    setup = _setup_lines(setup_code, width, rows) if setup_code else []
    if len(setup) == 1 and rows >= 4:
        pins.append(setup[0])
        setup = []
    elif setup:  # a screen of its own, with where to enter the code when there is room
        web = (web_address({**DEFAULTS, **snapshot}) or "").split("://", 1)[-1].rstrip("/")
        if web and len(web) <= width and len(setup) < rows:  # never a cut-off address
            setup.append(f"Web {web}" if len(web) + 4 <= width else web)
    body_rows = rows - len(pins)
    pages: list[list[str]] = []
    for block in blocks:
        if pins and block and block[0] == pins[0]:
            block = block[1:]
        for start in range(0, max(len(block), 1), body_rows):
            chunk = block[start : start + body_rows]
            if pages and start == 0 and len(pages[-1]) + len(chunk) <= body_rows:
                pages[-1].extend(chunk)
            else:
                pages.append(list(chunk))
    if pins:
        pages = [[*pins, *p] for p in pages]
    elif loud and len(pages) > 2:
        first, rest = pages[0], pages[1:]
        pages = [page for p in rest for page in (first, p)]
    if setup:
        pages = [page for p in pages for page in (setup, p)]
    return pages


def format_text(snapshot: dict[str, Any], *, setup_code: str | None = None) -> str:
    """The long form that ``pacsbox status`` prints and a wide console shows."""
    s = {**DEFAULTS, **snapshot}
    out = []
    if setup_code:
        web = web_address(s) or "the web page"
        out.append(f"Setup:    code {setup_code}  (first start: root has no password yet)")
        out.append(f"          enter it at {web} to choose one")
    if s["state"] == "not-running":
        out.append(f"!!! PACSBOX IS NOT RUNNING: {s['reason']}")
    if s["data_disk_problem"]:
        out.append(f"!!! DATA DISK PROBLEM: {s['data_disk_problem']}")
    if s["storage_full"]:
        out.append("!!! STORAGE FULL: new images are refused (A700) until space is freed")
    addresses = ", ".join(s["addresses"]) or "?"
    out.append(f"AE title: {s['ae_title']}   state: {s['state']}")
    out.append(f"DICOM:    {addresses} port {s['port']}")
    if s["state"] == "not-running":
        return "\n".join(out) + "\n"
    out.append(f"Web:      {web_address(s) or 'off'}")
    for d in s["disk"]:
        out.append(
            f"Disk:     {d.get('path')}: {d.get('percent', 0):.1f}% used, "
            f"{human_bytes(d.get('free_bytes'))} free of {human_bytes(d.get('total_bytes'))}"
        )
    out.append(
        f"Studies:  {s['studies_today']} today, {s['studies_total']} total "
        f"({s['instances_total']} images); {s['associations_active']} associations active"
    )
    last = s["last_study"]
    if last:
        out.append(
            f"Last:     {_short_time(last.get('received'), True)} "
            f"{last.get('modality') or '?'} from {last.get('calling_ae') or '?'} "
            f'"{last.get("description") or ""}" {last.get("study_uid") or ""}'
        )
    else:
        out.append("Last:     no study received yet")
    for job in s["jobs"]:
        out.append(
            f'Job:      {job.get("kind")} "{job.get("label") or ""}" '
            f"{_job_progress(job)} {job.get('state') or ''}".rstrip()
        )
    err = s["last_error"]
    if err:
        out.append(f"Error:    {_short_time(err.get('time'), True)} {err.get('message')}")
    out.append(f"Updated:  {s['updated']} (pid {s['pid']})")
    return "\n".join(out) + "\n"


def current(cfg: Any, max_age: float = STALE_AFTER) -> dict[str, Any]:
    """What readers show for ``cfg``: the live snapshot or a not-running one built from config."""
    snap, why = check_snapshot(cfg.status_path, max_age)
    problem = data_dir_problem(cfg.data_dir)
    if snap is None:
        snap = not_running(
            problem or why,
            ae_title=cfg.ApplicationEntityTitle,
            port=cfg.ServerPortNumber,
            addresses=local_addresses(),
        )
    if problem and not snap["data_disk_problem"]:
        snap["data_disk_problem"] = problem
    return snap


def exit_code(snap: dict[str, Any]) -> int:
    """For ``pacsbox status``: 0 healthy, 1 running with a problem, 3 not running (as LSB)."""
    if snap.get("state") == "not-running":
        return 3
    return 1 if alerts(snap) else 0
