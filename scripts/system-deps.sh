#!/usr/bin/env bash
# Installs the system packages the project uses when they are missing: ffmpeg (decoding m4a/aac and
# video containers), sox and espeak-ng (test fixtures), Debian's real recordings (alsa-utils,
# sound-theme-freedesktop) that the tests decode, postgresql (the tests start a throwaway server
# from its binaries to test the PostgreSQL heads store), and Debian's chromium, which the browser
# tests drive headless through Playwright (a browser download cannot work offline). Needs root
# and apt-get; otherwise says what to do.
set -euo pipefail
packages=(ffmpeg sox libsox-fmt-all espeak-ng alsa-utils sound-theme-freedesktop postgresql chromium)
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v sox >/dev/null || missing+=(sox libsox-fmt-all)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
[ -f /usr/share/sounds/alsa/Front_Center.wav ] || missing+=(alsa-utils)
[ -d /usr/share/sounds/freedesktop/stereo ] || missing+=(sound-theme-freedesktop)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: missing system packages (${missing[*]}); install them (e.g. apt-get install ${packages[*]}) or the tests that need them are skipped" >&2
fi
