"""The image checks itself: no failed unit, and pacsbox answers C-ECHO.

Run by pacsbox-selfcheck.service after pacsbox@PACSBOX.service is ready
(ARCHITECTURE.md rule 10). The image test and an operator read the unit's
result, so the check must fail loudly for anything that makes the box useless
while systemd still says "running": a failed data-partition mount, a daemon
in a restart loop, a port that does not answer.

The C-ECHO itself is the caller's (pynetdicom lives in ``scu``): ``run`` takes
it as a callable so this module stays a leaf.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from pacsbox.config import Config

SYSTEMCTL: tuple[str, ...] = ("systemctl",)
#: How long the C-ECHO may take to succeed (the daemon is READY already, but
#: a busy start-up may still be binding its TLS port or finishing a check).
ECHO_DEADLINE_S = 20.0
ECHO_RETRY_S = 1.0


def failed_units(systemctl: Sequence[str] = SYSTEMCTL) -> list[str]:
    """Names of the units systemd lists as failed.

    Raises RuntimeError with systemctl's own one-line reason when it cannot
    answer (no systemd as PID 1, no access to the manager): an unanswered
    question is a failed check, never an empty list.
    """
    cmd = [*systemctl, "--failed", "--no-legend", "--plain", "--no-pager"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[0]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {reason}")
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def wait_for_echo(
    echo: Callable[[], bool],
    deadline_s: float = ECHO_DEADLINE_S,
    retry_s: float = ECHO_RETRY_S,
) -> tuple[bool, str]:
    """Call ``echo`` until it returns True or the deadline passes; (ok, last reason)."""
    end = time.monotonic() + deadline_s
    reason = "no answer"
    while True:
        try:
            if echo():
                return True, "ok"
            reason = "no answer"
        except Exception as exc:  # any failure of the probe is the finding
            reason = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + retry_s > end:
            return False, reason
        time.sleep(retry_s)


def run(
    cfg: Config,
    echo: Callable[[], bool],
    systemctl: Sequence[str] = SYSTEMCTL,
    echo_deadline_s: float = ECHO_DEADLINE_S,
    out: TextIO | None = None,
) -> int:
    """Run both checks, print one line per check, return 0 only if both pass (else 1)."""
    out = out or sys.stdout
    ok = True
    try:
        failed = failed_units(systemctl)
    except RuntimeError as exc:
        print(f"selfcheck: FAIL cannot list failed units: {exc}", file=out)
        ok = False
    else:
        if failed:
            print(f"selfcheck: FAIL failed units: {' '.join(failed)}", file=out)
            ok = False
        else:
            print("selfcheck: ok no failed units", file=out)

    target = f"{cfg.ApplicationEntityTitle} on port {cfg.ServerPortNumber}"
    answered, reason = wait_for_echo(echo, echo_deadline_s)
    if answered:
        print(f"selfcheck: ok C-ECHO to {target}", file=out)
    else:
        print(f"selfcheck: FAIL C-ECHO to {target}: {reason}", file=out)
        ok = False
    out.flush()
    return 0 if ok else 1
