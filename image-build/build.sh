#!/usr/bin/env bash
# `make image`: the read-only pacsbox appliance image (issue 4, MISSION BOX-4).
#
#   base     mmdebstrap Debian 12 minbase + packages.txt, cached as a tarball
#            keyed by the package list (out/cache/base-<hash>.tar.zst)
#   wheels   the pacsbox wheel + the pinned dependencies of requirements.lock
#            (out/cache/wheels), built on the host (same CPython 3.11 ABI)
#   root     out/root: base + venv /usr/lib/pacsbox + systemd/ units + udev/
#            rules + rootfs/ overlay, users by sysusers, units by preset
#   squashfs out/root.squashfs (read-only root), out/vmlinuz, out/initrd.img
#   disk     out/pacsbox.img: GPT, ESP (systemd-boot) + root squashfs; the
#            data partition is appended on first boot by pacsbox-data.service
#
# Idempotent: every run starts the root afresh from the cached base, so a
# rebuild costs about a minute, a first build about two (the wheelhouse is
# made while mmdebstrap runs). `build.sh --lock` regenerates requirements.lock;
# `build.sh --for-tests` (make test) builds only when the inputs changed and
# leaves out/skip-reason instead of failing when the network is not there.
# Needs root (mmdebstrap, chroot ownership). Nothing is loop-mounted.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="${PACSBOX_IMAGE_OUT:-$HERE/out}"
CACHE="$OUT/cache"
ROOT="$OUT/root"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
# Kernel command line: squashfs root found by its GPT partition label, read
# only, /var a tmpfs (systemd.volatile=state); console on serial and screen.
CMDLINE="root=/dev/disk/by-partlabel/pacsbox-root rootfstype=squashfs ro systemd.volatile=state console=tty1 console=ttyS0 quiet"
ESP_MB=96

log() { printf '%s image: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_host_tools() {
  local missing=() p
  for p in mmdebstrap squashfs-tools fdisk mtools dosfstools zstd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]}"
  log "installing host tools: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Run a command inside the root with /proc, /sys and /dev set up, no boot.
in_root() {
  systemd-nspawn --register=no --keep-unit --quiet --as-pid2 -M pacsbox-build -D "$ROOT" \
    -E DEBIAN_FRONTEND=noninteractive -E LC_ALL=C.UTF-8 -E PIP_DISABLE_PIP_VERSION_CHECK=1 "$@" \
    2> >(grep -v "^Attempted to remove disk file system" >&2)
}

# pip's noise about this machine's extra index folders, not about the build.
quiet_pip() { grep -v "^WARNING: Location" >&2 || true; }

packages() { grep -v '^\s*#' "$HERE/packages.txt" | tr -s ' \n' '\n' | grep -v '^$' | sort -u; }

stage_base() {
  local key tarball
  key=$( (packages; echo "$SUITE $MIRROR v3 mmdebstrap") | sha256sum | cut -c1-12)
  tarball="$CACHE/base-$key.tar.zst"
  mkdir -p "$CACHE"
  if [ ! -s "$tarball" ]; then
    log "mmdebstrap $SUITE minbase (cache miss $key, under a minute)"
    local tmp="$OUT/base.tmp"
    rm -rf "$tmp"
    # Faster: apt fetches in parallel, dpkg does not fsync (a half-written
    # base is thrown away anyway), and no initramfs is made while installing
    # the kernel (INITRD=No; stage_configure makes the one the image boots).
    # The merged-usr hook merges /usr as debootstrap does, so apt does not
    # pull in the usrmerge converter (and with it perl, 50 MB).
    INITRD=No mmdebstrap --variant=minbase --include="$(packages | paste -sd,)" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt=force-unsafe-io --aptopt='Acquire::Languages "none"' \
      "$SUITE" "$tmp" "$MIRROR" >"$OUT/mmdebstrap.log" 2>&1 \
      || { tail -20 "$OUT/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $OUT/mmdebstrap.log)"; }
    # Smaller, and nothing in the image ever runs apt again.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* \
      "$tmp"/etc/apt/apt.conf.d/99mmdebstrap "$tmp"/etc/dpkg/dpkg.cfg.d/99mmdebstrap
    tar -C "$tmp" --numeric-owner -cf - . | zstd -q -T0 -3 -o "$tarball.part"
    mv "$tarball.part" "$tarball"
    find "$CACHE" -maxdepth 1 -name 'base-*.tar.zst' ! -name "base-$key.tar.zst" -delete
    rm -rf "${ROOT:?}"
    mv "$tmp" "$ROOT"
    return 0
  else
    log "base from cache ($key)"
  fi
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  zstd -q -dc "$tarball" | tar -C "$ROOT" --numeric-owner -xf -
}

pyproject_hash() { sha256sum "$REPO/pyproject.toml" | cut -c1-16; }

lock_requirements() {
  # Resolve pacsbox's dependencies (+ systemd, frontpanel extras) to exact pins.
  local tmp
  tmp=$(mktemp -d)
  "$PYTHON" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --upgrade pip
  "$tmp/venv/bin/pip" install -q "$REPO[systemd,frontpanel]" 2>&1 | quiet_pip
  {
    echo "# Pinned Python packages of the appliance image (generated by"
    echo "# \`bash image-build/build.sh --lock\`, again by itself when pyproject.toml"
    echo "# changes; edit pyproject.toml, not this)."
    echo "# pyproject: $(pyproject_hash)"
    "$tmp/venv/bin/pip" freeze --exclude-editable | grep -vi '^pacsbox[= @]' | sort -f
  } >"$HERE/requirements.lock"
  rm -rf "$tmp"
  log "wrote $HERE/requirements.lock"
}

stage_wheels() {
  local wh="$CACHE/wheels"
  mkdir -p "$wh"
  grep -q "^# pyproject: $(pyproject_hash)\$" "$HERE/requirements.lock" 2>/dev/null || lock_requirements
  # Pinned dependencies: built or downloaded once, then served from the cache.
  local stamp
  stamp="$wh/.lock-$(sha256sum "$HERE/requirements.lock" | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    log "wheelhouse from requirements.lock"
    "$PYTHON" -m pip wheel -q --no-deps --find-links "$wh" -w "$wh" -r "$HERE/requirements.lock" 2>&1 | quiet_pip \
      || die "pip wheel of requirements.lock failed (systemd-python needs libsystemd-dev and gcc)"
    touch "$stamp"
  fi
  # pacsbox itself: always rebuilt from the work tree.
  rm -f "$wh"/pacsbox-*.whl
  local tmp
  tmp=$(mktemp -d)
  cp -a "$REPO/pyproject.toml" "$REPO/pacsbox" "$tmp/"
  rm -rf "$tmp/pacsbox/web/ohif"  # the fetched viewer: stage_viewer adds it, not the wheel
  if [ -f "$REPO/README.md" ]; then cp "$REPO/README.md" "$tmp/"; fi
  find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
  "$PYTHON" -m pip wheel -q --no-deps -w "$wh" "$tmp" 2>&1 | quiet_pip
  rm -rf "$tmp"
}

stage_python() {
  log "venv /usr/lib/pacsbox from the wheelhouse"
  # Not /tmp: systemd-nspawn mounts a fresh tmpfs there.
  local wh=/var/cache/pacsbox-wheels
  mkdir -p "$ROOT$wh"
  cp "$CACHE"/wheels/*.whl "$HERE/requirements.lock" "$ROOT$wh/"
  in_root /usr/bin/python3 -m venv /usr/lib/pacsbox
  in_root /usr/lib/pacsbox/bin/pip install -q --no-index --find-links $wh -r $wh/requirements.lock
  in_root /bin/sh -c "set -e; /usr/lib/pacsbox/bin/pip install -q --no-index --no-deps $wh/pacsbox-*.whl"
  # No installer in a firmware image; precompile because the root is read only.
  in_root /usr/lib/pacsbox/bin/pip uninstall -q -y pip setuptools >/dev/null 2>&1 || true
  rm -rf "${ROOT:?}$wh" "$ROOT/root/.cache"
  find "$ROOT/usr/lib/pacsbox" -name __pycache__ -prune -exec rm -rf {} +
  in_root /usr/bin/python3 -m compileall -q -j0 /usr/lib/pacsbox/lib >/dev/null
  ln -sf /usr/lib/pacsbox/bin/pacsbox "$ROOT/usr/bin/pacsbox"
}

# The OHIF viewer (make viewer's pinned @ohif/app) beside the installed package,
# where pacsbox looks when ViewerDirectory is empty. Unpacked once into the cache;
# without the npm registry the image is built without it (its pages say so).
# Not in the --for-tests image: its tests boot the box, not the viewer (tested
# in Chromium by tests/interop/test_viewer.py), and 60 MB more squashfs is slower.
stage_viewer() {
  log "viewer (@ohif/app) beside the package"
  PYTHONPATH="$REPO" "$PYTHON" -m pacsbox.web.viewer_fetch --dest "$CACHE/viewer" --strict >&2 || return 0
  local site
  site=$(echo "$ROOT"/usr/lib/pacsbox/lib/python3*/site-packages)
  rm -rf "$site/pacsbox/web/ohif"
  cp -a "$CACHE/viewer" "$site/pacsbox/web/ohif"
}

stage_units() {
  log "units, rules, overlay"
  local sd="$ROOT/usr/lib/systemd/system" f
  install -d "$sd" "$ROOT/usr/lib/systemd/system-preset" "$ROOT/usr/lib/sysusers.d" \
    "$ROOT/usr/lib/tmpfiles.d" "$ROOT/usr/lib/udev/rules.d"
  for f in "$REPO"/systemd/*.service "$REPO"/systemd/*.timer "$REPO"/systemd/*.path \
           "$REPO"/systemd/*.socket "$REPO"/systemd/*.target; do
    if [ -e "$f" ]; then install -m 0644 "$f" "$sd/"; fi
  done
  for f in "$REPO"/systemd/*.preset; do
    if [ -e "$f" ]; then install -m 0644 "$f" "$ROOT/usr/lib/systemd/system-preset/"; fi
  done
  install -m 0644 "$REPO/systemd/pacsbox.sysusers" "$ROOT/usr/lib/sysusers.d/pacsbox.conf"
  install -m 0644 "$REPO/systemd/pacsbox.tmpfiles" "$ROOT/usr/lib/tmpfiles.d/pacsbox.conf"
  for f in "$REPO"/udev/*.rules; do
    if [ -e "$f" ]; then install -m 0644 "$f" "$ROOT/usr/lib/udev/rules.d/"; fi
  done
  # rootfs/ verbatim, owned by root (the work tree's owner means nothing here).
  tar -C "$REPO/rootfs" --owner=0 --group=0 --exclude=.gitkeep -cf - . | tar -C "$ROOT" --no-same-permissions --no-overwrite-dir -xf -
  chmod 0755 "$ROOT"/usr/libexec/pacsbox/* 2>/dev/null || true
  # Documentation the units point at.
  if [ -f "$REPO/README.md" ]; then install -D -m 0644 "$REPO/README.md" "$ROOT/usr/share/doc/pacsbox/README.md"; fi
}

stage_configure() {
  log "users, presets, defaults"
  echo pacsbox >"$ROOT/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tpacsbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
  # Empty machine-id: systemd makes a transient one in /run on a read-only root.
  : >"$ROOT/etc/machine-id"
  rm -f "$ROOT/var/lib/dbus/machine-id"
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
  : >"$ROOT/etc/fstab"
  # The instance configuration lives on the data partition (survives reboots
  # and image updates); the image ships its default.
  install -d -m 0755 "$ROOT/etc/pacsbox" "$ROOT/usr/share/pacsbox"
  in_root /usr/lib/pacsbox/bin/python -c '
import sys
from pacsbox import config
sys.stdout.write(config.default_ini({
    "DataDirectory": "/var/lib/pacsbox",
    "LogDirectory": "/var/log/pacsbox",
    "WebAddress": "0.0.0.0",
}))' >"$ROOT/usr/share/pacsbox/PACSBOX.ini"
  ln -sfn /var/lib/pacsbox/etc/PACSBOX.ini "$ROOT/etc/pacsbox/PACSBOX.ini"
  in_root systemd-sysusers >/dev/null
  in_root systemctl preset-all >/dev/null 2>&1
  # No console login on an appliance: root has no password, the front panel
  # owns tty1, and the serial console is for kernel messages.
  in_root systemctl mask getty@.service serial-getty@.service console-getty.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
  in_root systemctl set-default multi-user.target >/dev/null 2>&1
  # Kernel: only the drivers a PC, an SBC or a VM needs, and an initramfs that
  # mounts a squashfs root.
  local kver
  kver=$(ls "$ROOT/lib/modules" | sort -V | tail -1)
  local m="$ROOT/lib/modules/$kver/kernel"
  rm -rf "$m/drivers/gpu" "$m/drivers/media" "$m/drivers/net/wireless" "$m/drivers/infiniband" \
    "$m/drivers/staging" "$m/drivers/isdn" "$m/sound" "$m/drivers/net/ethernet/mellanox" \
    "$m/drivers/net/ethernet/qlogic" "$m/drivers/net/ethernet/chelsio" "$m/drivers/net/ethernet/broadcom/bnx2x" \
    "$m/net/bluetooth" "$m/drivers/bluetooth" "$m/drivers/net/can" "$m/net/mac80211" "$m/net/wireless" \
    "$m/drivers/iio" "$m/drivers/hid/amd-sfh-hid" "$m/fs/ocfs2" "$m/fs/gfs2" "$m/fs/btrfs" "$m/fs/xfs" \
    "$m/drivers/scsi/lpfc" "$m/drivers/scsi/qla2xxx" "$m/drivers/scsi/mpt3sas" "$m/drivers/target"
  rm -rf "$ROOT/lib/firmware"
  in_root depmod -a "$kver"
  printf 'squashfs\noverlay\nvirtio_blk\nvirtio_pci\nnvme\nsd_mod\next4\n' >>"$ROOT/etc/initramfs-tools/modules"
  sed -i 's/^COMPRESS=.*/COMPRESS=zstd/' "$ROOT/etc/initramfs-tools/initramfs.conf"
  in_root update-initramfs -c -k "$kver" >/dev/null 2>&1 || in_root update-initramfs -u -k "$kver" >/dev/null
  cp "$ROOT/boot/vmlinuz-$kver" "$OUT/vmlinuz"
  cp "$ROOT/boot/initrd.img-$kver" "$OUT/initrd.img"
  # Size: no docs, man pages, locales, caches, logs of the build.
  rm -rf "$ROOT"/usr/share/doc/[!p]* "$ROOT"/usr/share/man "$ROOT"/usr/share/info \
    "$ROOT"/usr/share/lintian "$ROOT"/usr/share/locale/* "$ROOT"/var/cache/apt/* \
    "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/log/* \
    "$ROOT"/boot/initrd.img-* "$ROOT"/tmp/* "$ROOT"/root/.cache
  find "$ROOT/usr/lib/python3" "$ROOT/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
  in_root /usr/bin/python3 -m compileall -q -j0 /usr/lib/python3.11 /usr/lib/python3 >/dev/null 2>&1 || true
  # The data partition's mount point on the read-only root.
  install -d -m 0750 "$ROOT/var/lib/pacsbox"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$ROOT/usr/lib/pacsbox/BUILD"
  git -C "$REPO" rev-parse --short HEAD >>"$ROOT/usr/lib/pacsbox/BUILD" 2>/dev/null || true
}

stage_squashfs() {
  log "squashfs"
  rm -f "$OUT/root.squashfs"
  # zstd level 9: 5 s on two cores against 30-60 s at level 15, for 6% more.
  mksquashfs "$ROOT" "$OUT/root.squashfs" -noappend -comp zstd -Xcompression-level 9 \
    -e boot/vmlinuz-* -quiet -no-progress >/dev/null
}

stage_disk() {
  log "disk image"
  local img="$OUT/pacsbox.img" esp="$OUT/esp.img"
  # ESP: systemd-boot, the kernel and initramfs, one loader entry. Built with
  # mtools, no mounting.
  rm -f "$esp"
  mkfs.vfat -C -n PACSBOX-ESP "$esp" $((ESP_MB * 1024)) >/dev/null
  mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/pacsbox
  mcopy -i "$esp" "$ROOT/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$esp" "$OUT/vmlinuz" ::/pacsbox/vmlinuz
  mcopy -i "$esp" "$OUT/initrd.img" ::/pacsbox/initrd.img
  printf 'default pacsbox.conf\ntimeout 0\neditor no\n' | mcopy -i "$esp" - ::/loader/loader.conf
  printf 'title pacsbox\nlinux /pacsbox/vmlinuz\ninitrd /pacsbox/initrd.img\noptions %s\n' "$CMDLINE" \
    | mcopy -i "$esp" - ::/loader/entries/pacsbox.conf
  local root_mb
  root_mb=$(( ($(stat -c %s "$OUT/root.squashfs") + 1048575) / 1048576 + 8 ))
  rm -f "$img"
  truncate -s $(( (1 + ESP_MB + root_mb + 1) * 1048576 )) "$img"
  sfdisk -q "$img" <<EOF
label: gpt
start=1MiB, size=${ESP_MB}MiB, type=uefi, name=pacsbox-esp
size=${root_mb}MiB, type=linux, name=pacsbox-root
EOF
  dd if="$esp" of="$img" bs=1M seek=1 conv=notrunc status=none
  dd if="$OUT/root.squashfs" of="$img" bs=1M seek=$((1 + ESP_MB)) conv=notrunc status=none
  rm -f "$esp"
  echo "$CMDLINE" >"$OUT/cmdline"
}

# What the image is made of, hashed: the work tree's files build.sh copies in.
inputs_hash() {
  (
    cd "$REPO"
    find pacsbox systemd udev rootfs image-build/build.sh image-build/packages.txt \
      image-build/requirements.lock pyproject.toml README.md -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'pacsbox/web/ohif/*' \
      -printf '%m %p\n' 2>/dev/null | LC_ALL=C sort \
      | while read -r m f; do echo "$m $f $(sha256sum <"$f")"; done
    echo "$SUITE $MIRROR"
  ) | sha256sum | cut -c1-16
}

# Prints why the build's sources cannot be reached (and succeeds), or fails
# quietly when Debian's archive and the Python package index both answer.
unreachable() {
  local index="${PIP_INDEX_URL:-https://pypi.org/simple}"
  "$PYTHON" - "$MIRROR/dists/$SUITE/Release" "${index%/}/pip/" <<'PY'
import sys, urllib.request
for url in sys.argv[1:]:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=8).close()
    except Exception as e:
        print(f"{url} unreachable ({getattr(e, 'reason', e)})")
        sys.exit(0)
sys.exit(1)
PY
}

# `make test`: build the image when it is out of date, so the image tests
# run on what is in the work tree; when it cannot be built for want of the
# network (or root, or by choice) leave out/skip-reason for the tests to skip
# with, and succeed. A build that fails for any other reason fails.
for_tests() {
  mkdir -p "$OUT"
  rm -f "$OUT/skip-reason"
  skip() { echo "$*" >"$OUT/skip-reason"; log "image tests will skip: $*"; exit 0; }
  [ "${PACSBOX_IMAGE_TESTS:-1}" != 0 ] || skip "PACSBOX_IMAGE_TESTS=0 (make test without the image layers)"
  [ "$(id -u)" = 0 ] || skip "image not built: building and booting it needs root"
  if [ -s "$OUT/pacsbox.img" ] && [ -x "$ROOT/usr/lib/pacsbox/bin/pacsbox" ] \
     && [ "$(cat "$OUT/inputs" 2>/dev/null)" = "$(inputs_hash)" ]; then
    log "image up to date ($OUT)"
    exit 0
  fi
  local why
  if why=$(unreachable); then skip "image not built: $why"; fi
  FOR_TESTS=1 build
}

build() {
  [ "$(id -u)" = 0 ] || die "run as root (mmdebstrap and file ownership in the image)"
  local t0=$SECONDS
  mkdir -p "$OUT"
  rm -f "$OUT/inputs" "$OUT/skip-reason"
  local inputs
  inputs=$(inputs_hash)
  need_host_tools
  # The wheelhouse (pip, network) is made while mmdebstrap runs.
  stage_wheels >"$OUT/wheels.log" 2>&1 &
  local wheels=$!
  stage_base
  wait "$wheels" || { cat "$OUT/wheels.log" >&2; die "wheelhouse failed"; }
  cat "$OUT/wheels.log" >&2
  stage_python
  [ -n "${FOR_TESTS:-}" ] || stage_viewer
  stage_units
  stage_configure
  stage_squashfs
  stage_disk
  echo "$inputs" >"$OUT/inputs"
  log "done in $((SECONDS - t0)) s: $OUT/pacsbox.img ($(du -h --apparent-size "$OUT/pacsbox.img" | cut -f1)), root.squashfs $(du -h "$OUT/root.squashfs" | cut -f1)"
}

case "${1:-}" in
  --lock) lock_requirements ;;
  --for-tests) for_tests ;;
  "") build ;;
  *) die "usage: build.sh [--lock | --for-tests]" ;;
esac
