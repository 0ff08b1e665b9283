"""The settings table drives the INI, the manual and the error messages."""

from __future__ import annotations

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
        "TLSPortNumber",
        "LogDirectory",
        "Database",
        "StorageFormat",
        "ThreadPoolSize",
        "PreferredXferSyntaxRx",
        "WorklistPollInterval",
    ):
        assert key in names


@pytest.mark.parametrize(
    "section,key,value,words",
    [
        ("server", "ServerPortNumber", "70000", "0 to 65535"),
        ("storage", "StorageFormat", "Jpeg", "DicomPart10, Native"),
        ("server", "ApplicationEntityTitle", "THIS_IS_FAR_TOO_LONG", "16"),
        ("storage", "DuplicatePolicy", "maybe", "replace, keep-first, reject"),
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
