"""ARCHITECTURE.md's import rules, checked on the source.

One owner per outside library, private pynetdicom names only in ``wire/``,
and layer order: a module imports only from its own layer or below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "pacsbox"

# library -> the modules (paths relative to pacsbox/, prefixes allowed) that may import it
OWNERS = {
    "peewee": ("db/",),
    "playhouse": ("db/",),
    "pynetdicom": ("wire/", "scp/", "scu/"),
    "bottle": ("web/",),
    "pyudev": ("media/",),
    "psutil": ("watermark/",),
    "systemd": ("notify.py", "log.py"),
    "hl7": ("hl7/",),
}

# Each room of pacsbox/ (a top-level module or package) and its layer
# (ARCHITECTURE.md, "The package"). Rooms the picture does not name are
# placed here: ``record_link`` lets a worker's stores
# join the daemon's group commit (beside archive), ``selfcheck`` is an edge
# (the image checking itself), ``assembly`` builds the daemon's and the
# workers' processes (top). A new room must be placed before it can land.
LAYERS = {
    1: ("__init__", "config", "errors", "log", "notify", "status", "meta", "progress", "pixels")
    + ("setupcode", "periodic"),
    2: ("wire",),
    3: ("storage", "db", "security"),
    4: ("archive", "recovery", "record_link", "edit", "attachments"),
    5: ("scp", "scu", "outbound", "worklist", "hl7", "media", "export", "web")
    + ("watermark", "audit", "selfcheck"),
    6: ("cli", "daemon", "workers", "frontpanel", "assembly"),
}
LAYER_OF = {room: layer for layer, rooms in LAYERS.items() for room in rooms}
# Sideways in layer 5: through scu (sub-operations), and the documented
# edges: the web page's upload drives the media importer, its export and
# burn buttons the File-set writer, its Forward buttons the outbound queue,
# and the queue's runner carries out the export and burn jobs (README, "Layout").
SIDEWAYS = {("web", "media"), ("web", "export"), ("web", "outbound"), ("outbound", "export")}
# HL7 ADT updates queue the same edit jobs the web page queues (outbound.edits).
SIDEWAYS |= {("hl7", "outbound")}

# pynetdicom attributes below its public API that only wire/ may touch.
PRIVATE_PYNETDICOM = frozenset({
    "_is_transport_event", "_decode_pdu", "_recv_pdu", "_run_loop_delay",
    "_reactor_checkpoint", "_is_paused", "_idle_timer", "_servers", "_STORAGE_CLASSES",
    "_move_scp", "_get_scp", "_config", "event_queue", "state_machine",
    "to_provider_queue", "to_user_queue", "msg_queue", "cancel_req",
})  # fmt: skip
# Names through which code reaches pynetdicom's objects from a handler.
PYNETDICOM_HANDLES = frozenset({
    "assoc", "dul", "dimse", "acse", "event", "ae", "requestor", "acceptor", "server",
})  # fmt: skip


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _modules(pkg: Path = PKG):
    for path in sorted(pkg.rglob("*.py")):
        yield path.relative_to(pkg).as_posix(), _tree(path)


def _room(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _target_room(name: str, pkg: Path) -> str | None:
    """The pacsbox room an imported name lives in (``pacsbox.X`` is a module or package
    only if it exists; otherwise it is a name from pacsbox/__init__.py)."""
    parts = name.split(".")
    if parts[0] != "pacsbox":
        return None
    if len(parts) == 1:
        return "__init__"
    if (pkg / parts[1]).is_dir() or (pkg / f"{parts[1]}.py").exists():
        return parts[1]
    return "__init__"


def test_each_outside_library_has_its_owners():
    wrong = []
    for rel, tree in _modules():
        for name in _imports(tree):
            top = name.split(".")[0]
            owners = OWNERS.get(top)
            if owners and not rel.startswith(owners):
                wrong.append(f"{rel} imports {name}")
    assert not wrong, wrong


def layer_violations(pkg: Path = PKG) -> list[str]:
    wrong = []
    for rel, tree in _modules(pkg):
        room = _room(rel)
        mine = LAYER_OF.get(room)
        if mine is None:
            wrong.append(f"{rel}: room {room!r} has no layer (place it in LAYERS)")
            continue
        for name in sorted(_imports(tree)):
            target = _target_room(name, pkg)
            if target is None or target == room:
                continue
            theirs = LAYER_OF.get(target)
            if theirs is None:
                continue  # reported as the target's own module
            if theirs > mine:
                wrong.append(f"{rel} (layer {mine}) imports {name} (layer {theirs})")
            elif theirs == mine == 5 and target != "scu" and (room, target) not in SIDEWAYS:
                wrong.append(f"{rel} imports {name}: layer 5 rooms meet only through scu")
    return sorted(set(wrong))


def test_layer_order_no_upward_imports():
    wrong = layer_violations()
    assert not wrong, wrong


def test_nothing_imports_cli_or_daemon():
    wrong = [
        f"{rel} imports {name}"
        for rel, tree in _modules()
        for name in _imports(tree)
        if name.startswith(("pacsbox.cli", "pacsbox.daemon")) and rel not in ("cli.py", "daemon.py")
    ]
    assert not wrong, wrong


def test_wire_imports_only_pynetdicom_pydicom_and_leaves():
    """wire/ knows nothing of archive or db: scp/ and scu hand it callbacks."""
    allowed = {"pynetdicom", "pydicom", "pacsbox", *sys.stdlib_module_names}
    wrong = [
        f"{rel} imports {name}"
        for rel, tree in _modules()
        if rel.startswith("wire/")
        for name in _imports(tree)
        if name.split(".")[0] not in allowed
    ]
    assert not wrong, wrong


def _pynetdicom_aliases(tree: ast.Module) -> set[str]:
    """Local names bound to pynetdicom modules or objects by this module's imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "pynetdicom":
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynetdicom"):
            names.update(a.asname or a.name for a in node.names)
    return names


def _chain(node: ast.AST) -> list[str]:
    """The names along an attribute chain, root first: a.b.c -> [a, b, c]."""
    out = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call):
        return [*_chain(node.func), *reversed(out)]
    if isinstance(node, ast.Name):
        out.append(node.id)
    return list(reversed(out))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(tree: ast.Module) -> list[str]:
    """Every reach below pynetdicom's public API in one module (line: what)."""
    aliases = _pynetdicom_aliases(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynetdicom"):
            if any(_is_private(p) for p in node.module.split(".")):
                found.append(f"{line}: from {node.module} import")
            found += [
                f"{line}: from {node.module} import {a.name}"
                for a in node.names
                if _is_private(a.name)
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"{line}: import {a.name}"
                for a in node.names
                if a.name.startswith("pynetdicom") and any(map(_is_private, a.name.split(".")))
            ]
        elif isinstance(node, ast.Attribute):
            chain = _chain(node)
            if node.attr in PRIVATE_PYNETDICOM:
                found.append(f"{line}: .{node.attr}")
            elif node.attr == "get_msg" and chain[-2:-1] == ["dimse"]:
                found.append(f"{line}: dimse.get_msg")
            elif _is_private(node.attr) and chain and chain[0] in aliases:
                found.append(f"{line}: {'.'.join(chain)}")
            elif _is_private(node.attr) and PYNETDICOM_HANDLES & set(chain[:-1]):
                found.append(f"{line}: {'.'.join(chain)}")
            if isinstance(node.ctx, ast.Store) and chain and chain[0] in aliases:
                found.append(f"{line}: {'.'.join(chain)} = ... (a pynetdicom global swapped)")
        elif isinstance(node, ast.FunctionDef) and node.name in PRIVATE_PYNETDICOM:
            found.append(f"{line}: def {node.name} (a pynetdicom method overridden)")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in PRIVATE_PYNETDICOM
        ):
            found.append(f"{line}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def private_violations(pkg: Path = PKG) -> list[str]:
    return [
        f"{rel}:{use}"
        for rel, tree in _modules(pkg)
        if not rel.startswith("wire/")
        for use in private_uses(tree)
    ]


def test_private_pynetdicom_names_only_in_wire():
    wrong = private_violations()
    assert not wrong, wrong


def pacsbox_attributes(pkg: Path = PKG) -> list[str]:
    """pacsbox state hung on other objects as attributes (``x._pacsbox_tap = ...``)."""
    found = []
    for rel, tree in _modules(pkg):
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                name = node.args[1].value
            if isinstance(name, str) and name.lstrip("_").startswith("pacsbox_"):
                found.append(f"{rel}:{node.lineno}: {name}")
    return found


def test_no_pacsbox_attributes_on_library_objects():
    """wire keeps its state in its own objects, scp in a WeakKeyDictionary."""
    wrong = pacsbox_attributes()
    assert not wrong, wrong


def test_the_control_client_names_the_socket_the_daemon_opens():
    """The client module stays free of the server's imports, so it repeats the name."""
    from pacsbox.outbound import control, control_client

    assert control_client.SOCKET_NAME == control.SOCKET_NAME


def test_a_forward_through_the_daemon_loads_no_index_or_dicom_library():
    """What makes ``pacsbox forward`` quick with a daemon running: the CLI and the control
    client alone, without peewee (and its database drivers) or the DICOM libraries."""
    import subprocess

    heavy = ("peewee", "psycopg2", "pydicom", "pynetdicom")
    code = (
        "import sys, pacsbox.cli, pacsbox.outbound.control_client; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nothing_in_pacsbox_imports_requests():
    """The daemon and its workers block ``requests`` (cli._leave_out_downloads): pydicom
    would load it for downloads nobody makes; nothing of ours may need it."""
    users = [rel for rel, tree in _modules() if any(
        n == "requests" or n.startswith("requests.") for n in _imports(tree))]  # fmt: skip
    assert users == []
