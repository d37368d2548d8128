#!/usr/bin/env bash
# Installs the system packages the project uses when what the tests need is missing: ffmpeg
# (decoding m4a/aac and video containers; the tests encode opus, aac, alac, flac and mpeg4 with it),
# sox with its format handlers (the tests write wav, flac, ogg and mp3 with it: a sox without its
# mp3 handler is not enough), espeak-ng (speech fixtures), Debian's real recordings (alsa-utils,
# sound-theme-freedesktop), postgresql (the tests start a throwaway server from its binaries) and
# Debian's chromium (the browser tests drive it headless). Each is checked for what it can do, not
# only for a binary on PATH. Needs root and apt-get; otherwise says what to install.
#
# `system-deps.sh container` installs instead what `make test-container` (scripts/container-test.sh)
# needs: podman and runc (builds and runs the image; crun cannot on a cgroup v1+v2 hybrid layout),
# mmdebstrap (makes its Debian base), curl, python3 and alsa-utils (its requests and recordings).
# `system-deps.sh --check` only reports what is missing (exit 1 if anything is).
set -euo pipefail

sox_writes() {  # sox lists the file formats it handles on one line of its help
  command -v sox >/dev/null && sox -h 2>&1 | sed -n 's/^AUDIO FILE FORMATS: //p' | tr ' ' '\n' | grep -qx "$1"
}
ffmpeg_encodes() {
  command -v ffmpeg >/dev/null && ffmpeg -hide_banner -encoders 2>/dev/null | awk '{print $2}' | grep -qx "$1"
}
ffmpeg_decodes() {
  command -v ffmpeg >/dev/null && ffmpeg -hide_banner -decoders 2>/dev/null | awk '{print $2}' | grep -qx "$1"
}

missing=()
need() { for p in "$@"; do [[ " ${missing[*]} " == *" $p "* ]] || missing+=("$p"); done; }

if [ "${1:-}" = container ]; then
  command -v podman >/dev/null || need podman
  command -v runc >/dev/null || need runc  # crun fails on a cgroup v1+v2 hybrid layout
  command -v mmdebstrap >/dev/null || need mmdebstrap
  command -v curl >/dev/null || need curl
  command -v python3 >/dev/null || need python3
  [ -f /usr/share/sounds/alsa/Front_Center.wav ] || need alsa-utils
else
  for codec in libopus aac alac flac mpeg4; do ffmpeg_encodes "$codec" || need ffmpeg; done
  for codec in aac mp3 opus vorbis; do ffmpeg_decodes "$codec" || need ffmpeg; done
  command -v sox >/dev/null || need sox
  for format in wav flac ogg mp3; do sox_writes "$format" || need libsox-fmt-all; done
  command -v espeak-ng >/dev/null || need espeak-ng
  [ -f /usr/share/sounds/alsa/Front_Center.wav ] || need alsa-utils
  compgen -G '/usr/share/sounds/freedesktop/stereo/*.oga' >/dev/null || need sound-theme-freedesktop
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need postgresql
  [ -x /usr/bin/chromium ] || need chromium
fi

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${1:-}" = --check ]; then
  echo "missing system packages (or what they provide): ${missing[*]}" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ "${1:-}" != container ] && ! bash "$0" --check; then
    echo "error: installed ${missing[*]}, and still missing the above: see scripts/system-deps.sh" >&2
    exit 1
  fi
else
  echo "warning: missing system packages (${missing[*]}); install them (as root: apt-get install ${missing[*]}) or the tests that need them are skipped" >&2
fi
