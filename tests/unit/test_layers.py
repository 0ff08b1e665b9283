"""ARCHITECTURE.md's import rules, checked on the source: one owner per outside library."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "pacsbox"

# library -> the modules (paths relative to pacsbox/, prefixes allowed) that may import it
OWNERS = {
    "peewee": ("db/",),
    "playhouse": ("db/",),
    "pynetdicom": ("scp/", "scu.py"),
    "bottle": ("web/",),
    "pyudev": ("media/",),
    "psutil": ("watermark.py",),
    "systemd": ("notify.py", "log.py"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path.relative_to(PKG).as_posix(), _imports(path)


def test_each_outside_library_has_its_owners():
    wrong = []
    for rel, names in _modules():
        for name in names:
            top = name.split(".")[0]
            owners = OWNERS.get(top)
            if owners and not rel.startswith(owners):
                wrong.append(f"{rel} imports {name}")
    assert not wrong, wrong


def test_nothing_imports_cli_or_daemon():
    wrong = [
        f"{rel} imports {name}"
        for rel, names in _modules()
        for name in names
        if name in ("pacsbox.cli", "pacsbox.daemon") and rel not in ("cli.py", "daemon.py")
    ]
    assert not wrong, wrong


def test_edges_do_not_import_each_other():
    """web, scp, media and export meet in archive and db, never directly."""
    edges = {
        "web/": "pacsbox.web",
        "scp/": "pacsbox.scp",
        "media/": "pacsbox.media",
        "export/": "pacsbox.export",
    }
    wrong = []
    for rel, names in _modules():
        mine = next((v for k, v in edges.items() if rel.startswith(k)), None)
        if mine is None:
            continue
        for name in names:
            for other in edges.values():
                if other != mine and name.startswith(other):
                    wrong.append(f"{rel} imports {name}")
    # The two documented edges: the web page's upload drives the media importer
    # and its export button the File-set writer (README, "Layout").
    allowed = ("web/upload.py imports pacsbox.media", "web/exports.py imports pacsbox.export")
    wrong = [w for w in wrong if not w.startswith(allowed)]
    assert not wrong, wrong
