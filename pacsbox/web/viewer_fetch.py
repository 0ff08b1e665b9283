"""Fetch the OHIF viewer (``@ohif/app``, MIT) from the npm registry at a pinned version.

The prebuilt app is never committed: ``make run``, ``make test`` and CI call
this module, which gets the pinned tarball with ``npm pack`` (so npm's own
registry, proxy and cache settings apply), checks its sha512 integrity
and unpacks ``dist/`` into the viewer folder, without what the viewer does not
need. The build expects to be served at ``/``; its absolute paths (index.html,
webpack's public path, the stylesheet's fonts) are rewritten to ``/viewer/``
here, once, so the web page serves the files as they are.
Without the registry it prints one line and exits 0: the rest of pacsbox works
and the page says the viewer is not installed.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pacsbox import config

VERSION = "3.13.2"
PACKAGE = "@ohif/app"
INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
MOUNT = "/viewer/"  # where pacsbox.web.viewer serves the files
STAMP = ".pacsbox-viewer"  # version and integrity of what the folder holds
LAYOUT = "gz"  # how it was unpacked: a new layout unpacks again


def stamp_text() -> str:
    return f"{VERSION} {INTEGRITY} {LAYOUT}"


# Not unpacked: the ONNX runtime (136 MB, only for the AI segmentation tools),
# source maps, and the shipped app-config.js (the page generates its own).
SKIPPED = re.compile(r"^(ort/|.*\.map$|app-config\.js$)")
PUBLIC_PATH = re.compile(rb'__webpack_require__\.p = "/";')
TIMEOUT = 600.0  # a 50 MB download on a slow line


class FetchError(Exception):
    """The tarball could not be had or is not the pinned one."""


def installed(dest: Path) -> bool:
    """True when ``dest`` holds the pinned viewer, unpacked completely."""
    stamp = dest / STAMP
    return stamp.is_file() and stamp.read_text().strip() == stamp_text()


def check_integrity(data: bytes) -> None:
    """Raise FetchError unless ``data`` is the pinned tarball (npm's sha512 integrity)."""
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != INTEGRITY:
        raise FetchError(f"@ohif/app {VERSION}: integrity {got[:24]}... is not the pinned one")


def download(timeout: float = TIMEOUT) -> bytes:
    """The pinned tarball by ``npm pack`` (npm's own registry settings, cache and proxy)."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed (scripts/system-deps.sh installs it)")
    env = {
        **os.environ,
        "npm_config_fetch_retries": os.environ.get("npm_config_fetch_retries", "1"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    with tempfile.TemporaryDirectory(prefix="pacsbox-viewer-") as work:
        cmd = [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", work, "--json"]
        try:
            proc = subprocess.run(
                cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise FetchError(f"npm pack took more than {timeout:.0f} s") from None
        packed = list(Path(work).glob("*.tgz"))
        if proc.returncode != 0 or len(packed) != 1:
            raise FetchError(f"npm pack failed: {_npm_error(proc.stdout, proc.stderr)}")
        return packed[0].read_bytes()


def _npm_error(stdout: str, stderr: str) -> str:
    """npm's one-line reason: its JSON error's summary, else its first error line."""
    try:
        error, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{") :])
        return str(error["error"]["summary"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return lines[0] if lines else "no reason given"


# Kept gzipped beside the file as well: the main bundle is 17 MB of JavaScript,
# 3.4 MB gzipped: a quarter of a second instead of 1.4 s on 100 Mbit/s.
COMPRESSED = {".js", ".css", ".wasm", ".json", ".svg", ".html"}


def rebase(name: str, data: bytes) -> bytes:
    """The file as served under MOUNT: the build's absolute ``/`` paths moved there."""
    if name == "index.html":
        text = data.decode()
        text = re.sub(r'(href|src)="/(?!/)', rf'\1="{MOUNT}', text)
        text = text.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{MOUNT}"')
        # An installable-app manifest is fetched without the session cookie: useless here.
        text = re.sub(r'<link rel="manifest"[^>]*>', "", text)
        return text.encode()
    if name.endswith(".css"):
        return data.replace(b"url(/", f"url({MOUNT}".encode())
    if name.endswith(".js"):
        return PUBLIC_PATH.sub(f'__webpack_require__.p = "{MOUNT}";'.encode(), data)
    return data


def unpack(data: bytes, dest: Path) -> int:
    """Unpack ``package/dist`` of the tarball into ``dest`` (replaced whole); the file count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".viewer-", dir=dest.parent))
    count = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith("package/dist/"):
                    continue
                name = member.name.removeprefix("package/dist/")
                if SKIPPED.match(name) or ".." in Path(name).parts:
                    continue
                src = tar.extractfile(member)
                assert src is not None  # a regular file
                target = work / name
                target.parent.mkdir(parents=True, exist_ok=True)
                body = rebase(name, src.read())
                target.write_bytes(body)
                if target.suffix in COMPRESSED and len(body) >= 1024:
                    target.with_name(target.name + ".gz").write_bytes(
                        gzip.compress(body, compresslevel=6, mtime=0)
                    )
                count += 1
        if not (work / "index.html").is_file():
            raise FetchError("the tarball has no package/dist/index.html")
        (work / STAMP).write_text(stamp_text() + "\n")
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        work.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return count


def ensure(dest: Path, tarball: Path | None = None) -> str:
    """Install the pinned viewer into ``dest`` unless it is there; a one-line summary."""
    if installed(dest):
        return f"viewer: @ohif/app {VERSION} already in {dest}"
    data = tarball.read_bytes() if tarball else download()
    check_integrity(data)
    count = unpack(data, dest)
    return f"viewer: @ohif/app {VERSION} unpacked into {dest} ({count} files)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pacsbox.web.viewer_fetch", description=__doc__)
    p.add_argument("--config", help="INI whose ViewerDirectory is filled (default: as pacsbox)")
    p.add_argument("--dest", type=Path, help="folder to fill instead of ViewerDirectory")
    p.add_argument("--tarball", type=Path, help=f"a copy of ohif-app-{VERSION}.tgz, not npm")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when the viewer cannot be installed"
    )
    args = p.parse_args(argv)
    dest = args.dest or config.load(args.config).viewer_dir
    try:
        print(ensure(dest, args.tarball))
    except (FetchError, OSError, tarfile.TarError) as exc:
        print(f"viewer not installed: {exc}; the rest of pacsbox works without it")
        return 1 if args.strict else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
