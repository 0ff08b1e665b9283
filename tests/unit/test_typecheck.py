"""The type check catches the defect behind the AE page's 500 (issue 16).

``web/aes.py`` called ``config._ae_title`` after it had been renamed, inside
a handler without annotations, whose body mypy's default does not check.
These run mypy with the project's ``[tool.mypy]`` on such a handler. The
package itself is checked by ``make typecheck`` (``make test`` and
``make test-fast`` run it), so mypy goes over it once per run, not twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]

HANDLER = """
from pacsbox import config


def ae_form(values):
    return config.{name}(values.get("title", ""))
"""


def _mypy(tmp_path: Path, name: str, *extra: str) -> tuple[int, str]:
    module = tmp_path / "handler.py"
    module.write_text(HANDLER.format(name=name))
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            # Only the handler's own errors: the package is make typecheck's.
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
            str(module),
        ]
    )
    return status, out + err


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    # mypy finds pacsbox from the working directory, as make typecheck does.
    monkeypatch.chdir(ROOT)


def test_missing_module_attribute_in_unannotated_function_fails(tmp_path):
    status, out = _mypy(tmp_path, "_ae_title")
    assert status == 1, out
    assert 'has no attribute "_ae_title"' in out
    assert "handler.py:6:" in out


def test_the_existing_name_passes(tmp_path):
    status, out = _mypy(tmp_path, "parse_ae_title")
    assert status == 0, out


def test_mypy_default_would_have_missed_it(tmp_path):
    """check_untyped_defs is the setting that catches it: without it, the same
    handler passes (which is how the 500 shipped)."""
    status, out = _mypy(tmp_path, "_ae_title", "--no-check-untyped-defs")
    assert status == 0, out
