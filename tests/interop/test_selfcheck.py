"""The self-check passes only with no failed unit and a C-ECHO answered.

The C-ECHO is DCMTK's echoscu against a real pacsbox on a free port. There is
no systemd as PID 1 here, so a stand-in `systemctl` script answers
``--failed``; the real systemctl is used once, to prove that a manager that
cannot be asked fails the check instead of passing it.
"""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

import pytest

from pacsbox import selfcheck
from pacsbox.config import load
from tests.helpers import dcmtk, free_port, write_config


def fake_systemctl(tmp_path: Path, output: str = "", rc: int = 0) -> list[str]:
    """A systemctl that prints ``output`` for --failed (the real one needs systemd as PID 1)."""
    script = tmp_path / "systemctl"
    (tmp_path / "failed.txt").write_text(output)
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --failed "*) ;; *) echo "unexpected: $*" >&2; exit 64;; esac\n'
        f'cat "{tmp_path / "failed.txt"}"\n'
        f"exit {rc}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)]


def config_in(tmp_path: Path):
    return load(write_config(tmp_path / "box"))


def echoscu(ae_title: str, port: int):
    return lambda: (
        dcmtk(
            "echoscu", "-aet", "STORESCU", "-aec", ae_title, "127.0.0.1", str(port), timeout=30
        ).returncode
        == 0
    )


def test_passes_with_no_failed_unit_and_an_answering_pacsbox(server, tmp_path) -> None:
    out = io.StringIO()
    cfg = server.cfg.replace(ServerPortNumber=server.port)
    rc = selfcheck.run(
        cfg, echoscu(server.ae_title, server.port), fake_systemctl(tmp_path), out=out
    )
    assert rc == 0, out.getvalue()
    assert out.getvalue().splitlines() == [
        "selfcheck: ok no failed units",
        f"selfcheck: ok C-ECHO to {server.ae_title} on port {server.port}",
    ]


def test_fails_on_a_failed_unit(server, tmp_path) -> None:
    failed = "var-lib-pacsbox.mount loaded failed failed /var/lib/pacsbox\n"
    out = io.StringIO()
    cfg = server.cfg.replace(ServerPortNumber=server.port)
    rc = selfcheck.run(
        cfg, echoscu(server.ae_title, server.port), fake_systemctl(tmp_path, failed), out=out
    )
    assert rc == 1
    assert "FAIL failed units: var-lib-pacsbox.mount" in out.getvalue()


def test_fails_when_nothing_answers_c_echo(tmp_path) -> None:
    cfg = config_in(tmp_path)
    port = free_port()  # nobody listens
    out = io.StringIO()
    rc = selfcheck.run(
        cfg, echoscu("PACSBOX", port), fake_systemctl(tmp_path), echo_deadline_s=0.5, out=out
    )
    assert rc == 1
    assert "FAIL C-ECHO to PACSBOX" in out.getvalue()
    assert "ok no failed units" in out.getvalue()


def test_a_probe_that_raises_is_a_failure_with_its_reason(tmp_path) -> None:
    def boom() -> bool:
        raise ConnectionRefusedError("refused")

    out = io.StringIO()
    rc = selfcheck.run(
        config_in(tmp_path), boom, fake_systemctl(tmp_path), echo_deadline_s=0, out=out
    )
    assert rc == 1
    assert "ConnectionRefusedError: refused" in out.getvalue()


def test_a_manager_that_cannot_answer_fails_the_check(tmp_path) -> None:
    rc = selfcheck.run(
        config_in(tmp_path), lambda: True, fake_systemctl(tmp_path, "", rc=1), out=io.StringIO()
    )
    assert rc == 1
    with pytest.raises(RuntimeError, match="no output"):
        selfcheck.failed_units(fake_systemctl(tmp_path, "", rc=1))


def test_real_systemctl_without_systemd_is_not_an_empty_list() -> None:
    systemctl = shutil.which("systemctl")
    assert systemctl, "systemctl is missing: apt-get install systemd (make test does)"
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd is PID 1 here; the not-booted case cannot be shown")
    with pytest.raises(RuntimeError, match="--failed"):
        selfcheck.failed_units([systemctl])
