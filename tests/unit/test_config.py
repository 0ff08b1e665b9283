"""The settings table drives the INI, the manual and the error messages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pacsbox import config
from pacsbox.errors import ConfigError

MANUAL = Path(config.__file__).parent / "manual" / "settings.md"


def test_manual_documents_every_key():
    text = MANUAL.read_text()
    assert config.manual_table() in text, "regenerate pacsbox/manual/settings.md"
    for s in config.SETTINGS:
        assert f"`{s.name}`" in text
    for key in config.NOT_YET_SUPPORTED:
        assert key in text and key in config.default_ini()


def test_default_ini_round_trips(tmp_path):
    ini = tmp_path / "a.ini"
    ini.write_text(config.default_ini())
    cfg = config.parse_file(ini)
    for s in config.SETTINGS:
        if not s.is_path:
            assert getattr(cfg, s.name) == s.parse(s.default), s.name
    assert cfg.data_dir == tmp_path.resolve()


def test_statement_keys_are_present():
    names = {s.name for s in config.SETTINGS}
    for key in (
        "ApplicationEntityTitle",
        "ServerPortNumber",
        "LogDirectory",
        "Database",
        "StorageFormat",
        "PreferredXferSyntaxRx",
        "ThreadPoolSize",
    ):
        assert key in names
    # The statement's keys whose feature has not landed are not settings yet.
    assert "TLSPortNumber" not in names and "TLSPortNumber" in config.NOT_YET_SUPPORTED
    assert (
        "WorklistPollInterval" in names and "WorklistPollInterval" not in config.NOT_YET_SUPPORTED
    )


def test_a_pacsone_style_ini_loads_with_one_warning_per_unsupported_key(tmp_path, caplog):
    ini = tmp_path / "PACSONE.ini"
    ini.write_text(
        "[server]\nApplicationEntityTitle = OLDPACS\nTLSPortNumber = 5678\n"
        "threadpoolsize = 8\nWorklistPollInterval = 10\n"
    )
    with caplog.at_level("WARNING", logger="pacsbox.config"):
        cfg = config.parse_file(ini)
    assert (cfg.ApplicationEntityTitle, cfg.ThreadPoolSize) == ("OLDPACS", 8)
    assert cfg.WorklistPollInterval == 10  # a setting since the worklist SCU (SCU-6)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert str(ini) in lines[0] and "TLSPortNumber" in lines[0]
    assert "not supported yet" in lines[0] and "ignored" in lines[0] and "\n" not in lines[0]
    assert not hasattr(cfg, "TLSPortNumber")


def _attributes_read(tree: ast.AST) -> set[str]:
    """``x.Name`` and ``getattr(x, "Name", ...)`` anywhere in a module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            names.add(node.args[1].value)
    return names


def test_every_setting_is_read_by_the_code():
    """A setting that nothing reads does nothing: it goes until its feature lands.
    (The derived locations of config.Config count: they are how paths are read.)"""
    pkg = Path(config.__file__).parent
    read: set[str] = set()
    for path in pkg.rglob("*.py"):
        read |= _attributes_read(ast.parse(path.read_text()))
    assert [s.name for s in config.SETTINGS if s.name not in read] == []


@pytest.mark.parametrize(
    "section,key,value,words",
    [
        ("server", "ServerPortNumber", "70000", "0 to 65535"),
        ("storage", "StorageFormat", "Jpeg", "DicomPart10, Native"),
        ("server", "ApplicationEntityTitle", "THIS_IS_FAR_TOO_LONG", "16"),
        ("storage", "DuplicatePolicy", "maybe", "replace, keep-first, reject"),
        ("web", "DicomWebCorsOrigins", "*", "no paths, no *"),
        ("web", "DicomWebCorsOrigins", "https://viewer/ohif", "https://viewer.clinic.local:3000"),
    ],
)
def test_bad_value_names_file_key_and_allowed(tmp_path, section, key, value, words):
    ini = tmp_path / "bad.ini"
    ini.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as exc:
        config.parse_file(ini)
    msg = str(exc.value)
    assert str(ini) in msg and key in msg and words in msg


def test_unknown_key_and_wrong_section(tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[server]\nServrPortNumber = 104\n")
    with pytest.raises(ConfigError, match="unknown key"):
        config.parse_file(ini)
    ini.write_text("[storage]\nServerPortNumber = 104\n")
    with pytest.raises(ConfigError, match=r"belongs in section \[server\]"):
        config.parse_file(ini)


def test_keys_are_case_insensitive_and_paths_resolve(tmp_path):
    ini = tmp_path / "x.ini"
    ini.write_text("[server]\nserverportnumber = 104\n[storage]\nArchiveDirectory = arch\n")
    cfg = config.parse_file(ini)
    assert cfg.ServerPortNumber == 104
    assert cfg.archive_dir == (tmp_path / "arch").resolve()
