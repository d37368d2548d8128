#!/usr/bin/env bash
# Installs the system packages the project uses when they are missing: ffmpeg (decoding m4a/aac and
# video containers), sox and espeak-ng (test fixtures), Debian's real recordings (alsa-utils,
# sound-theme-freedesktop) that the tests decode, postgresql (the tests start a throwaway server
# from its binaries to test the PostgreSQL heads store), and Debian's chromium, which the browser
# tests drive headless through Playwright (a browser download cannot work offline). Needs root
# and apt-get; otherwise says what to do.
#
# `system-deps.sh container` installs instead what `make test-container` (scripts/container-test.sh)
# needs: podman and runc (builds and runs the image; crun cannot on a cgroup v1+v2 hybrid layout),
# mmdebstrap (makes its Debian base), curl, python3 and alsa-utils (its requests and recordings).
set -euo pipefail
missing=()
if [ "${1:-}" = container ]; then
  packages=(podman runc mmdebstrap curl python3 alsa-utils)
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)  # crun fails on a cgroup v1+v2 hybrid layout
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  [ -f /usr/share/sounds/alsa/Front_Center.wav ] || missing+=(alsa-utils)
else
  packages=(ffmpeg sox libsox-fmt-all espeak-ng alsa-utils sound-theme-freedesktop postgresql chromium)
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v sox >/dev/null || missing+=(sox libsox-fmt-all)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  [ -f /usr/share/sounds/alsa/Front_Center.wav ] || missing+=(alsa-utils)
  [ -d /usr/share/sounds/freedesktop/stereo ] || missing+=(sound-theme-freedesktop)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: missing system packages (${missing[*]}); install them (e.g. apt-get install ${packages[*]}) or the tests that need them are skipped" >&2
fi
