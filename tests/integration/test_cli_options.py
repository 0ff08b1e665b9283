"""`--config` and `--debug` mean the same before and after every subcommand (MISSION's
contract: "Every command takes --config (before or after the subcommand), exits non-zero
with a one-line reason on error, and --help explains it")."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from pacsbox import cli as pcli
from pacsbox import config
from tests.helpers import PACSBOX, write_config

# The smallest valid arguments of every subcommand (a new one must be added here).
LEAVES: dict[tuple[str, ...], list[str]] = {
    ("serve",): [],
    ("scp-worker",): ["--index", "1", "--listen-fd", "0", "--processes", "2", "--record-fd", "0"],
    ("default-config",): [],
    ("ae", "add"): ["CT9", "--host", "127.0.0.1", "--port", "104"],
    ("ae", "list"): [],
    ("ae", "remove"): ["CT9"],
    ("ae", "diagnose"): ["CT9"],
    ("rebuild-index",): [],
    ("check",): [],
    ("user", "add"): ["someone"],
    ("user", "passwd"): ["someone", "--generate"],
    ("user", "list"): [],
    ("user", "token"): ["someone"],
    ("user", "tokens"): ["someone"],
    ("user", "revoke-token"): ["someone", "1"],
    ("selfcheck",): [],
    ("purge",): ["--dry-run"],
    ("import",): ["/nonexistent-folder"],
    ("export",): ["--study", "1.2.3", "--out", "/nonexistent-out"],
    ("burn",): ["/nonexistent-volume"],
    ("status",): [],
    ("frontpanel",): ["--once"],
    ("forward",): ["--study", "1.2.3", "--to", "CT9"],
    ("print",): ["CT9", "--series", "1.2.3", "--layout", "2x2", "--copies", "2"],
    ("queue",): ["retry", "7"],
    ("route", "add"): ["CT", "--to", "CT9"],
    ("route", "list"): [],
    ("route", "remove"): ["CT"],
    ("query",): ["CT9", "-k", "PatientID=1"],
    ("retrieve",): ["CT9", "--study", "1.2.3"],
    ("sync", "add"): ["CT9", "--hours", "2,14"],
    ("sync", "list"): [],
    ("sync", "remove"): ["CT9"],
    ("sync", "run"): ["CT9"],
    ("worklist", "add"): ["--patient-id", "P1", "--patient-name", "DOE^JANE", "--accession",
                          "A1", "--modality", "CT", "--station-ae", "CT9", "--date", "20260101"],
    ("worklist", "list"): ["--json"],
    ("worklist", "remove"): ["7"],
    ("worklist", "poll"): ["RIS1", "--wait"],
}  # fmt: skip


def _leaves(parser, prefix=()) -> set[tuple[str, ...]]:
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        return {prefix}
    out: set[tuple[str, ...]] = set()
    for name, child in subs[0].choices.items():
        out |= _leaves(child, (*prefix, name))
    return out


def placements(cmd: tuple[str, ...], rest: list[str], opts: list[str]) -> list[list[str]]:
    """The options before the subcommand, after it (and between nested names)."""
    out = [[*opts, *cmd, *rest], [*cmd, *rest, *opts]]
    if len(cmd) == 2:
        out.append([cmd[0], *opts, cmd[1], *rest])
    return out


def test_every_subcommand_is_listed_here():
    assert _leaves(pcli.build_parser()) == set(LEAVES)


@pytest.mark.parametrize("cmd", sorted(LEAVES), ids=" ".join)
def test_config_and_debug_are_read_wherever_they_stand(cmd):
    parser = pcli.build_parser()
    for argv in placements(cmd, LEAVES[cmd], ["--config", "/x/box.ini", "--debug"]):
        args = parser.parse_args(argv)
        assert (args.config, args.debug) == ("/x/box.ini", True), argv
    args = parser.parse_args([*cmd, *LEAVES[cmd]])
    assert (args.config, args.debug) == (None, False)


def run(argv: list[str], cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PACSBOX_CONFIG"}
    return subprocess.run(
        [PACSBOX, *argv], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.mark.parametrize("cmd", sorted(LEAVES), ids=" ".join)
def test_a_missing_file_fails_in_one_line_naming_it(cmd, tmp_path):
    missing = str(tmp_path / "nonexistent.ini")
    for argv in placements(cmd, LEAVES[cmd], ["--config", missing]):
        r = run(argv, tmp_path)
        assert r.returncode != 0, argv
        assert r.stderr.splitlines() == [f"pacsbox: {missing}: configuration file not found"], (
            argv,
            r.stderr,
        )
        assert not (tmp_path / "var").exists()  # nothing made for another instance


def test_debug_before_or_after_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "nonexistent.ini")
    for argv in placements(("ae", "list"), [], ["--config", missing, "--debug"]):
        r = run(argv, tmp_path)
        assert r.returncode != 0 and "Traceback" in r.stderr and missing in r.stderr, argv
    r = run(["ae", "list", "--config", missing], tmp_path)
    assert "Traceback" not in r.stderr


def test_the_named_instance_is_the_one_reported(tmp_path):
    ini = write_config(tmp_path / "box", ApplicationEntityTitle="DISTINCT7", ServerPortNumber=4242)
    for argv in placements(("status",), ["--json"], ["--config", str(ini)]):
        snap = json.loads(run(argv, tmp_path).stdout)
        assert (snap["ae_title"], snap["port"]) == ("DISTINCT7", 4242), argv
    r = run(["ae", "add", "MODALITY7", "--host", "127.0.0.1", "--config", str(ini)], tmp_path)
    assert r.returncode == 0, r.stderr
    for argv in placements(("ae", "list"), [], ["--config", str(ini)]):
        r = run(argv, tmp_path)
        assert r.returncode == 0 and "MODALITY7" in r.stdout, (argv, r.stderr)
    assert not (tmp_path / "var").exists()  # the default instance was never touched


def test_help_explains_config_everywhere(tmp_path):
    for argv in (["--help"], ["status", "--help"], ["ae", "add", "--help"]):
        r = run(argv, tmp_path)
        assert r.returncode == 0 and "--config" in r.stdout and "PACSBOX_CONFIG" in r.stdout


def test_a_pacsone_style_ini_still_runs_with_one_warning_per_key(tmp_path):
    ini = write_config(tmp_path / "box", ApplicationEntityTitle="OLDPACS")
    text = ini.read_text().replace(
        "[server]\n", "[server]\nTLSPortNumber = 5678\nWorklistPollInterval = 8\n", 1
    )
    ini.write_text(text)
    r = run(["ae", "list", "--config", str(ini)], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines  # WorklistPollInterval is a setting now (SCU-6)
    assert lines[0].startswith("pacsbox: ") and "TLSPortNumber" in lines[0]
    assert "not supported yet" in lines[0] and "ignored" in lines[0]
    assert config.load(ini).WorklistPollInterval == 8
