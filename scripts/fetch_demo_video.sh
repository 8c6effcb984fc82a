#!/usr/bin/env bash
# Print the path of the demo video, OpenCV's pedestrian clip vtest.avi (768x576, 10 fps, msmpeg4, 79.5 s),
# taken from Debian's opencv-doc package (Apache-2.0/BSD-3) without installing that package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AVAFORGE_DEMO_CACHE:-$ROOT/.cache/demo}"
VIDEO="$CACHE/vtest.avi"
if [[ -s "$VIDEO" ]]; then echo "$VIDEO"; exit 0; fi
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
SUDO=()
if [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
if ! apt-get download opencv-doc >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update >/dev/null
    apt-get download opencv-doc >/dev/null 2>&1
fi
dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi
mv usr/share/doc/opencv-doc/examples/data/vtest.avi "$VIDEO.partial"
mv "$VIDEO.partial" "$VIDEO"
echo "$VIDEO"
