"""The units in systemd/ are what systemd will actually run, checked by systemd's own tools.

`systemd-analyze verify` only *warns* (exit 0) on unknown keys and bad values
such as ``Type=notifyy``, so every check here fails on any output at all, and a
negative case proves the checker catches those mistakes. Units are verified in
a throw-away root (``--root``) holding the stock units of this machine, our
units where the image installs them, and a stand-in /usr/bin/pacsbox, because
verify insists that ExecStart binaries exist. No systemd as PID 1 is needed.

Security threshold: `systemd-analyze security --offline=yes` scores exposure
from 0 (locked down) to 10. We require <= 2.0 for every pacsbox@ instance
(also one with the port-104 drop-in) and <= 2.5 for the front panel and the
self-check ("OK" ends at 3.9 in systemd's own scale). At the time of writing:
pacsbox@ 1.3, with port 104 1.5, front panel 1.3, self-check 1.9.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
STOCK_UNITS = Path("/usr/lib/systemd/system")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target", ".mount")
DAEMON = "pacsbox@.service"
PORT104_DROPIN = "pacsbox@.service.d-port104.conf"
THRESHOLDS = {"pacsbox@": 2.0, "pacsbox-frontpanel": 2.5, "pacsbox-selfcheck": 2.5}
# Instance names for templates we ship (several daemons side by side); any
# other template is verified as instance "PACSBOX".
INSTANCES = {DAEMON: ["PACSBOX", "ORTHO"]}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install systemd (make test installs it)")
    return path


def our_units() -> list[Path]:
    units = sorted(p for p in SYSTEMD_DIR.iterdir() if p.name.endswith(UNIT_SUFFIXES))
    assert any(p.name == DAEMON for p in units), f"{DAEMON} missing from {SYSTEMD_DIR}"
    return units


def unit_names(unit: Path) -> list[str]:
    """What to verify for a unit file: itself, or instances of a template."""
    stem, dot, suffix = unit.name.rpartition(".")
    if stem.endswith("@"):
        return [f"{stem}{i}.{suffix}" for i in INSTANCES.get(unit.name, ["PACSBOX"])]
    return [unit.name]


def exec_binaries(text: str) -> set[str]:
    """Absolute paths run by Exec*= lines (after systemd's -@:+! prefixes)."""
    out = set()
    for m in re.finditer(r"^Exec\w+=\s*[-@:+!]*(/\S+)", text, re.MULTILINE):
        out.add(m.group(1))
    return out


def make_root(root: Path, overrides: dict[str, str] | None = None) -> Path:
    """A root as the image has it: stock units, ours in /usr/lib, fake executables.

    ``overrides`` maps a unit file name to replacement text (negative cases).
    """
    if not STOCK_UNITS.is_dir():
        pytest.fail(f"{STOCK_UNITS} is missing: apt-get install systemd")
    vendor = root / "usr/lib/systemd/system"
    shutil.copytree(STOCK_UNITS, vendor, symlinks=True)
    binaries = {"/usr/bin/pacsbox"}
    for unit in our_units():
        text = (overrides or {}).get(unit.name, unit.read_text())
        (vendor / unit.name).write_text(text)
        # Other binaries must exist on this machine (a typo is then caught).
        binaries |= {b for b in exec_binaries(text) if Path(b).exists()}
    dropins = root / "etc/systemd/system/pacsbox@PORT104.service.d"
    dropins.mkdir(parents=True)
    text = (overrides or {}).get(PORT104_DROPIN, (SYSTEMD_DIR / PORT104_DROPIN).read_text())
    (dropins / "port104.conf").write_text(text)
    for binary in binaries:
        fake = root / binary.lstrip("/")
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    return root


def verify(root: Path, *names: str) -> str:
    """Everything `systemd-analyze verify` says (stdout and stderr) plus a bad exit code."""
    proc = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        said += f"\n(exit {proc.returncode})"
    return said.strip()


def exposure(root: Path, name: str, threshold: float) -> tuple[float, str]:
    proc = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=yes",
            f"--root={root}",
            f"--threshold={round(threshold * 10)}",  # systemd's scale is x10
            "--no-pager",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(rf"Overall exposure level for {re.escape(name)}: ([\d.]+) (\w+)", proc.stdout)
    assert m, f"no score for {name}: {proc.stdout[-500:]}{proc.stderr}"
    score = float(m.group(1))
    assert proc.returncode == 0 or score > threshold, proc.stderr
    return score, proc.stdout


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; repeated keys kept, as systemd reads them."""
    out, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(text: str, section: str, key: str) -> list[str]:
    return [v for s, k, v in directives(text) if s == section and k == key]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("root"))


# -- systemd-analyze verify: silent, for every unit -----------------------------


@pytest.mark.parametrize("unit", our_units(), ids=lambda p: p.name)
def test_verify_is_silent(root: Path, unit: Path) -> None:
    assert verify(root, *unit_names(unit)) == ""


def test_verify_instances_side_by_side_and_port104_dropin(root: Path) -> None:
    names = [f"pacsbox@{i}.service" for i in ("PACSBOX", "ORTHO", "PORT104")]
    assert verify(root, *names, "pacsbox-frontpanel.service", "pacsbox-selfcheck.service") == ""


@pytest.mark.parametrize(
    ("find", "replace", "reported"),
    [
        ("Type=notify", "Type=notifyy", "notifyy"),
        ("WatchdogSec=30", "WatchdogSec=thirty", "thirty"),
        ("ProtectSystem=strict", "ProtectSystm=strict", "ProtectSystm"),
        ("ExecStart=/usr/bin/pacsbox", "ExecStart=/usr/bin/pacsboxd", "/usr/bin/pacsboxd"),
    ],
    ids=["bad-type", "bad-watchdog", "unknown-key", "missing-binary"],
)
def test_verify_check_catches_mistakes(tmp_path: Path, find: str, replace: str, reported: str):
    text = (SYSTEMD_DIR / DAEMON).read_text()
    assert find in text
    bad = make_root(tmp_path / "root", {DAEMON: text.replace(find, replace, 1)})
    said = verify(bad, "pacsbox@PACSBOX.service")
    assert said != "" and reported in said, said


def test_verify_check_catches_a_bad_dropin(tmp_path: Path) -> None:
    """A misspelt key in the drop-in is reported. (verify ignores unknown capability
    names silently; the security test below proves the real name takes effect.)"""
    typo = "[Service]\nAmbientCapability=CAP_NET_BIND_SERVICE\n"
    bad = make_root(tmp_path / "root", {PORT104_DROPIN: typo})
    assert "AmbientCapability" in verify(bad, "pacsbox@PORT104.service")


# -- systemd-analyze security ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pacsbox@PACSBOX.service",
        "pacsbox@PORT104.service",
        "pacsbox-frontpanel.service",
        "pacsbox-selfcheck.service",
    ],
)
def test_security_exposure_under_threshold(root: Path, name: str) -> None:
    threshold = next(t for prefix, t in THRESHOLDS.items() if name.startswith(prefix))
    score, report = exposure(root, name, threshold)
    assert score <= threshold, f"{name} exposure {score} > {threshold}:\n{report}"


def test_only_the_port104_instance_may_bind_privileged_ports(root: Path) -> None:
    bind = "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)"
    for name, allowed in (("pacsbox@PACSBOX.service", False), ("pacsbox@PORT104.service", True)):
        _, report = exposure(root, name, 10)
        line = next(ln for ln in report.splitlines() if bind in ln)
        assert line.lstrip().startswith("✗" if allowed else "✓"), f"{name}: {line}"


# -- what the issue demands of the daemon unit, read from the file ---------------


def test_daemon_unit_contract() -> None:
    text = (SYSTEMD_DIR / DAEMON).read_text()
    one = {(s, k): v for s, k, v in directives(text)}
    assert one[("Service", "Type")] == "notify"
    assert re.fullmatch(r"\d+(s|min)?", one[("Service", "WatchdogSec")]), "WatchdogSec= unset"
    assert one[("Service", "Restart")] == "on-failure"
    assert int(one[("Unit", "StartLimitBurst")]) > 0
    assert one[("Unit", "StartLimitIntervalSec")]
    assert one[("Service", "ExecStart")] == "/usr/bin/pacsbox serve --config /etc/pacsbox/%i.ini"
    assert one[("Service", "User")] == "pacsbox"
    assert one[("Service", "ProtectSystem")] == "strict"
    assert one[("Service", "ReadWritePaths")].split() == ["/var/lib/pacsbox", "/var/log/pacsbox"]
    assert one[("Service", "NoNewPrivileges")] == "yes"
    assert one[("Service", "PrivateTmp")] == "yes"
    assert values(text, "Service", "CapabilityBoundingSet") == [""]
    assert values(text, "Service", "AmbientCapabilities") in ([], [""])


@pytest.mark.parametrize("unit", our_units(), ids=lambda p: p.name)
def test_no_unit_waits_for_network_online(unit: Path) -> None:
    """With no cable, anything ordered after network-online.target waits 120 s at boot."""
    for section, key, value in directives(unit.read_text()):
        assert "network-online.target" not in value, f"{unit.name} [{section}] {key}={value}"


def test_instance_specific_settings_use_the_instance_name() -> None:
    """Two instances must not share a config, a PID file, a runtime dir or a socket."""
    text = (SYSTEMD_DIR / DAEMON).read_text()
    for section, key, value in directives(text):
        if key in ("PIDFile", "RuntimeDirectory", "ListenStream", "SyslogIdentifier"):
            assert "%i" in value, f"[{section}] {key}={value} is shared by every instance"
    assert "/etc/pacsbox/%i.ini" in text


# -- the user, the folders and the preset, applied by systemd's own tools ---------


def test_sysusers_and_tmpfiles_make_the_user_and_its_folders(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD_DIR / "pacsbox.sysusers")],
        check=True,
        capture_output=True,
    )
    passwd = (tmp_path / "etc/passwd").read_text()
    entry = next(ln for ln in passwd.splitlines() if ln.startswith("pacsbox:"))
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert 0 < int(uid) < 1000 and shell.endswith("nologin"), entry
    proc = subprocess.run(
        [
            tool("systemd-tmpfiles"),
            f"--root={tmp_path}",
            "--create",
            str(SYSTEMD_DIR / "pacsbox.tmpfiles"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for folder in ("var/lib/pacsbox", "var/log/pacsbox"):
        st = (tmp_path / folder).stat()
        assert (st.st_uid, st.st_gid) == (int(uid), int(gid)), folder
        assert st.st_mode & 0o007 == 0, f"{folder} is world-accessible"


def test_preset_enables_the_daemon_front_panel_and_self_check(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    presets = root / "usr/lib/systemd/system-preset"
    presets.mkdir(parents=True, exist_ok=True)
    shutil.copy(SYSTEMD_DIR / "90-pacsbox.preset", presets / "90-pacsbox.preset")
    ours = ["pacsbox@.service", "pacsbox-frontpanel.service", "pacsbox-selfcheck.service"]
    proc = subprocess.run(
        [tool("systemctl"), f"--root={root}", "preset", *ours],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    wants = root / "etc/systemd/system/multi-user.target.wants"
    enabled = sorted(p.name for p in wants.iterdir())
    for name in (
        "pacsbox@PACSBOX.service",
        "pacsbox-frontpanel.service",
        "pacsbox-selfcheck.service",
    ):
        assert name in enabled, enabled
