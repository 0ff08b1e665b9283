#!/usr/bin/env bash
# Install the Debian packages pacsbox needs, only those missing, so a clean
# machine works and a prepared one pays nothing. "base": to build and run;
# "test": the real peers the tests use (DCMTK, Orthanc, xorriso, dicom3tools,
# systemd-analyze, Chromium, PostgreSQL for the index on a server, libfuse 3
# for the power-cut tests).
set -euo pipefail
want=(python3-venv python3-dev gcc pkg-config libsystemd-dev)
# make viewer fetches the OHIF viewer with npm pack; any npm will do (NodeSource's too).
command -v npm >/dev/null || want+=(npm)
if [ "${1:-base}" = test ]; then
  want+=(dcmtk orthanc xorriso dicom3tools systemd systemd-container chromium chromium-driver fuseiso udev eject squashfs-tools postgresql)
  # tests/powercut: the volatile FUSE file system (mfusepy loads the library; no fusermount).
  want+=(libfuse3-3)
  # tests/interop/test_hl7.py: mllp_send, a real MLLP client from python-hl7.
  want+=(python3-hl7)
  # tests/interop/test_dicomweb.py: QIDO parity with Orthanc's DICOMweb plugin.
  want+=(orthanc-dicomweb)
  # The image layers: the build (image-build/build.sh) and qemu with UEFI firmware.
  want+=(mmdebstrap fdisk mtools dosfstools zstd qemu-system-x86 ovmf)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
