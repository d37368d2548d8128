#!/usr/bin/env bash
# `make test-container`: builds the Dockerfile's image with podman and uses it as a user would.
#
#   1. installs what it needs when missing (podman, runc, mmdebstrap, curl, python3, alsa-utils);
#   2. makes a Debian 12 base image with mmdebstrap (no image registry is needed: the tarball is
#      cached in .container-cache/ and made again when older than VGGISH_CONTAINER_BASE_MAX_AGE_DAYS,
#      default 7) and builds the Dockerfile on it (BASE_IMAGE), with torch's CPU wheel from
#      wheels/ (copied there from this machine's pip when missing) or from TORCH_INDEX_URL;
#   3. runs it as its user (uid 10001) with -e VGGISH_WEIGHTS=random and a host folder as /data:
#      through the cold start the image's HEALTHCHECK command must fail until /readyz is 200, and
#      pass after; then an embedding (WAV, and m4a made by the image's ffmpeg), a head trained
#      (201) and found in the folder on the host, the process's uid, a clean stop.
#
# Needs root on Debian 12 (apt-get); prints each check, the times and the image size, and exits
# non-zero at the first failure with what failed. Everything it makes in podman (the base image,
# the image, the container, its volume) is removed on exit; the base tarball and wheels/ are kept.
# VGGISH_CONTAINER_KEEP=1 keeps the image (tag printed) for a look. One run at a time.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VGGISH_CONTAINER_CACHE:-$repo/.container-cache}"
base_max_age_days="${VGGISH_CONTAINER_BASE_MAX_AGE_DAYS:-7}"
keep="${VGGISH_CONTAINER_KEEP:-0}"
label=vggish-container-test
run_id="vggish-ctest-$$"
base_tag="localhost/$run_id-base:bookworm"
image_tag="localhost/$run_id:latest"
container="$run_id"
sounds=/usr/share/sounds/alsa
work=""
passed=0
started=$EPOCHREALTIME
declare -A times=()

say() { printf '%s\n' "$*"; }
ok() { passed=$((passed + 1)); say "  ok    $*"; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
fail() {
  say "  FAIL  $*" >&2
  if [ -n "$work" ] && podman container exists "$container" 2>/dev/null; then
    say "--- the container's last log lines:" >&2
    podman logs --tail 30 "$container" >&2 2>&1 || true
    say "---" >&2
  fi
  say "container-test: $passed passed, 1 failed" >&2
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$work" ]; then
    podman rm --force --volumes --time 10 "$container" >/dev/null 2>&1
    if [ "$keep" = 1 ] && [ "$rc" = 0 ]; then
      say "kept: $image_tag (podman rmi $image_tag $base_tag)"
    else
      podman rmi --force "$image_tag" "$base_tag" >/dev/null 2>&1
    fi
    rm -rf "$work"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'say "container-test: interrupted" >&2; exit 130' INT TERM

# The rest is one block: bash reads it whole before it runs it (an edit to this file during a
# run cannot change what the run does next).
{

[ "$(id -u)" = 0 ] || fail "needs root (podman as root, mmdebstrap, apt-get); run it with sudo"
command -v apt-get >/dev/null || fail "needs a Debian (12) machine: apt-get is missing"

say "== set-up"
bash "$repo/scripts/system-deps.sh" container
for tool in podman mmdebstrap curl python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing and could not be installed"
done
[ -f "$sounds/Front_Center.wav" ] || fail "$sounds/Front_Center.wav is missing (alsa-utils)"
ok "podman $(podman version --format '{{.Client.Version}}'), mmdebstrap, curl, python3, $sounds"

# A run killed before its clean-up leaves its container and images behind: remove them.
for id in $(podman ps --all --quiet --filter "label=$label"); do podman rm --force --volumes "$id" >/dev/null; done
for id in $(podman images --quiet --filter "label=$label" | sort -u); do podman rmi --force "$id" >/dev/null 2>&1 || true; done

work="$(mktemp -d "${TMPDIR:-/tmp}/vggish-ctest.XXXXXX")"
mkdir -p "$cache"

# Without CAP_SYS_RESOURCE (this project's machines, some CI sandboxes) a container cannot get
# podman's default rlimits, which are above podman's own (nofile 1048576 for root): runc and crun
# fail with "error setting rlimit ... operation not permitted" (--ulimit host too). Limits no
# higher than podman's own work everywhere: nofile, the hard limit here; nproc, podman's 32768.
nofile="$(ulimit -Hn)"; [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
nproc="$(ulimit -Hu)"; [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

say "== base image (Debian 12 minbase, mmdebstrap)"
base_tar="$cache/debian-bookworm-minbase.tar"
t=$EPOCHREALTIME
if [ -f "$base_tar" ] && [ -z "$(find "$base_tar" -mtime "+$base_max_age_days")" ]; then
  times[base]="cached"
  ok "cached base tarball $base_tar (made $(date -r "$base_tar" '+%F %R'))"
else
  mmdebstrap --quiet --variant=minbase bookworm "$work/base.tar" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -20 "$work/mmdebstrap.log" >&2; fail "mmdebstrap could not make the base (log above)"; }
  mv "$work/base.tar" "$base_tar"
  times[base]="$(elapsed "$t") s"
  ok "made $base_tar in ${times[base]}"
fi
podman import --quiet --change "LABEL $label=1" "$base_tar" "$base_tag" >/dev/null \
  || fail "podman import $base_tar failed"

# The first OCI runtime that starts a container here. crun fails on a cgroup v1 + v2 "hybrid"
# layout like this machine's ("cgroups in hybrid mode not supported"); runc works.
runtime=""
for candidate in runc crun; do
  command -v "$candidate" >/dev/null || continue
  if podman run --rm --runtime "$candidate" "${limits[@]}" "$base_tag" true >"$work/probe-$candidate.log" 2>&1; then
    runtime="$candidate"
    break
  fi
  say "  note  $candidate cannot start a container here: $(tail -1 "$work/probe-$candidate.log")"
done
[ -n "$runtime" ] || fail "neither runc nor crun can start a container here (above)"
ok "OCI runtime: $runtime, with ${limits[*]}"

say "== build"
build_args=(--build-arg "BASE_IMAGE=$base_tag")
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  ok "torch from TORCH_INDEX_URL"
else
  torch_spec="$(sed -n 's/^ARG TORCH_SPEC=//p' "$repo/Dockerfile")"
  [ -n "$torch_spec" ] || fail "no 'ARG TORCH_SPEC=' in the Dockerfile"
  if ! compgen -G "$repo/wheels/torch-*.whl" >/dev/null; then
    # pip's own configuration finds the wheel (here: a local folder of wheels).
    python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
      --python-version 3.11 --platform manylinux_2_28_x86_64 --dest "$repo/wheels" "$torch_spec" \
      >"$work/pip-download.log" 2>&1 \
      || { tail -5 "$work/pip-download.log" >&2
           fail "no $torch_spec wheel for the image: put one into wheels/ or set TORCH_INDEX_URL (docs/container.md)"; }
  fi
  ok "torch wheel for the build: $(cd "$repo/wheels" && echo torch-*.whl)"
fi
# pip in the build trusts what this machine trusts (a TLS-intercepting proxy's CA among them).
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
if [ -f "$ca" ]; then
  build_args+=(--volume "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
t=$EPOCHREALTIME
# --format docker: OCI image configs have no HEALTHCHECK (buildah drops it); --layers=false
# leaves no intermediate images behind; --network host: pip and apt-get reach their registries.
podman build --runtime "$runtime" --format docker --pull=never --layers=false --force-rm --network host "${limits[@]}" \
  --label "$label=1" "${build_args[@]}" --tag "$image_tag" "$repo" >"$cache/last-build.log" 2>&1 \
  || { tail -25 "$cache/last-build.log" >&2; fail "podman build failed (the whole log: $cache/last-build.log)"; }
times[build]="$(elapsed "$t") s"
size_bytes="$(podman image inspect --format '{{.Size}}' "$image_tag")"
size="$(awk -v b="$size_bytes" 'BEGIN { printf "%.2f GB (%.0f MiB)", b / 1e9, b / 1048576 }')"
ok "built $image_tag in ${times[build]}: $size"

say "== the image's configuration"
podman image inspect "$image_tag" >"$work/image.json"
python3 - "$work/image.json" >"$work/config.txt" <<'EOF' || fail "$(cat "$work/config.txt")"
import json, sys
image = json.load(open(sys.argv[1]))[0]
config = image["Config"]
env = dict(item.split("=", 1) for item in config.get("Env") or [])
health = config.get("Healthcheck") or image.get("Healthcheck") or {}  # podman: beside Config
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what}: {got!r}, expected {want!r}")
expect("USER", config.get("User"), "10001:10001")
expect("CMD", config.get("Cmd"), ["vggish", "serve"])
expect("VOLUME", sorted(config.get("Volumes") or {}), ["/data"])
for key, want in {"VGGISH_DATA_DIR": "/data", "VGGISH_HOST": "0.0.0.0",
                  "OPENBLAS_NUM_THREADS": "1"}.items():
    expect(key, env.get(key), want)
test = health.get("Test") or []
if test[:1] != ["CMD"] or "/readyz" not in " ".join(test):
    problems.append(f"HEALTHCHECK does not probe /readyz: {test!r}")
if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"{health['StartPeriod'] / 1e9:.0f} {health['Interval'] / 1e9:.0f} {health['Retries']}")
EOF
read -r start_period interval retries <"$work/config.txt"
ok "USER 10001, CMD vggish serve, VOLUME /data, VGGISH_DATA_DIR=/data, OPENBLAS_NUM_THREADS=1"
ok "HEALTHCHECK probes /readyz: start period ${start_period} s, interval ${interval} s, retries $retries"

say "== run (uid 10001, -e VGGISH_WEIGHTS=random, a host folder as /data)"
data="$work/data"
mkdir -p "$data"
chown 10001:10001 "$data"
chmod 700 "$data"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base_url="http://127.0.0.1:$port"
t=$EPOCHREALTIME
# podman's periodic health checks are systemd timers; without systemd it says so on stderr (kept in
# $work/run.err) and this script runs the check itself: podman healthcheck run.
podman run --runtime "$runtime" --detach --name "$container" --label "$label=1" "${limits[@]}" \
  --publish "127.0.0.1:$port:8000" --volume "$data:/data" --env VGGISH_WEIGHTS=random \
  "$image_tag" >/dev/null 2>"$work/run.err" \
  || { cat "$work/run.err" >&2; fail "podman run failed (above)"; }
ok "started $container on $base_url"

readyz() { curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 "$base_url/readyz" || true; }
health_status() { podman inspect --format '{{.State.Health.Status}}' "$container"; }
# /readyz is polled every second; the image's HEALTHCHECK command (a Python process in the
# container) every 10 s, so as not to slow the start it measures: each run must fail before ready.
failing_probes=0
starting_status=""
for ((i = 0; ; i++)); do
  [ "$(podman inspect --format '{{.State.Running}}' "$container")" = true ] \
    || fail "the container stopped during its cold start (exit code $(podman inspect --format '{{.State.ExitCode}}' "$container"))"
  [ "$(readyz)" = 200 ] && break
  if [ $((i % 10)) = 0 ]; then
    if podman healthcheck run "$container" >/dev/null 2>&1; then
      [ "$(readyz)" = 200 ] && break
      fail "the HEALTHCHECK command passed while /readyz was not 200"
    fi
    failing_probes=$((failing_probes + 1))
    starting_status="$(health_status)"
    [ "$starting_status" = starting ] \
      || fail "health status during the start period: $starting_status, expected starting"
  fi
  awk -v a="$t" -v b="$EPOCHREALTIME" -v p="$start_period" 'BEGIN { exit !(b - a > p) }' \
    && fail "not ready within the HEALTHCHECK's start period (${start_period} s): it would report unhealthy"
  sleep 1
done
times[ready]="$(elapsed "$t") s"
[ "$failing_probes" -gt 0 ] || fail "the HEALTHCHECK never ran before ready (ready in ${times[ready]})"
ok "cold start: the HEALTHCHECK command failed all $failing_probes times it ran before ready (status: $starting_status)"
podman healthcheck run "$container" >/dev/null 2>&1 || fail "the HEALTHCHECK command fails although /readyz is 200"
status="$(health_status)"
[ "$status" = healthy ] || fail "health status after ready: $status, expected healthy"
ok "ready (/readyz 200) ${times[ready]} after podman run; the HEALTHCHECK command passes, status healthy"
if awk -v r="${times[ready]% s}" -v p="$start_period" 'BEGIN { exit !(r * 2 <= p) }'; then
  ok "the start period (${start_period} s) is at least twice this cold start"
else
  say "  warn  this cold start (${times[ready]}) is more than half the start period (${start_period} s): a slower machine may be called unhealthy"
fi

uid="$(podman exec "$container" id -u)"
[ "$uid" = 10001 ] || fail "podman exec id -u: $uid, expected 10001"
host_pid="$(podman inspect --format '{{.State.Pid}}' "$container")"
host_uid="$(ps -o uid= -p "$host_pid" | tr -d ' ')"
[ "$host_uid" = 10001 ] || fail "the server process (host pid $host_pid) runs as uid $host_uid, expected 10001"
ok "the server runs as uid 10001 (in the container, and host pid $host_pid)"

torch="$(podman exec "$container" python -W ignore -c 'import torch; print(torch.__version__, torch.version.cuda)')"
case "$torch" in *" None") ok "torch ${torch% None} (torch.version.cuda None: the CPU build)" ;; *) fail "torch in the image: $torch, not a CPU build" ;; esac

say "== requests"
post() {  # post PATH OUTPUT CURL-ARGS...: prints the HTTP status
  local path="$1" out="$2"; shift 2
  curl --silent --show-error --max-time 120 --output "$out" --write-out '%{http_code}' "$@" "$base_url$path" \
    || echo "curl-failed"
}
code="$(post /v1/embeddings "$work/embeddings.json" -F "file=@$sounds/Front_Center.wav")"
[ "$code" = 200 ] || fail "POST /v1/embeddings (WAV): $code $(head -c 300 "$work/embeddings.json")"
rows="$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["data"][0]["embeddings"]; assert d and all(len(r) == 128 for r in d); print(len(d))' "$work/embeddings.json")" \
  || fail "POST /v1/embeddings (WAV): no 128-wide embeddings in $(head -c 300 "$work/embeddings.json")"
ok "POST /v1/embeddings Front_Center.wav: 200, $rows x 128"

podman exec "$container" ffmpeg -nostdin -loglevel error -f lavfi -i sine=frequency=440:duration=3 \
  -c:a aac -y /tmp/tone.m4a || fail "the image's ffmpeg could not make an m4a"
podman exec "$container" cat /tmp/tone.m4a >"$work/tone.m4a"
code="$(post /v1/embeddings "$work/m4a.json" -F "file=@$work/tone.m4a")"
[ "$code" = 200 ] || fail "POST /v1/embeddings (m4a, decoded by ffmpeg): $code $(head -c 300 "$work/m4a.json")"
ok "POST /v1/embeddings tone.m4a (AAC, made and decoded by the image's ffmpeg): 200"

code="$(post /v1/heads "$work/head.json" -F name=kinds -F kind=linear \
  -F "file=@$sounds/Front_Left.wav" -F label=a -F "file=@$sounds/Front_Right.wav" -F label=b \
  -F "file=@$sounds/Rear_Left.wav" -F label=a -F "file=@$sounds/Rear_Right.wav" -F label=b)"
[ "$code" = 201 ] || fail "POST /v1/heads (train a head): $code $(head -c 300 "$work/head.json")"
ok "POST /v1/heads name=kinds kind=linear, 4 files: 201"

say "== stop"
t=$EPOCHREALTIME
podman stop --time 60 "$container" >/dev/null 2>>"$work/run.err" || fail "podman stop failed: $(tail -3 "$work/run.err")"
exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
[ "$exit_code" = 0 ] || fail "the server exited with $exit_code on SIGTERM, expected 0"
ok "podman stop: exit code 0 in $(elapsed "$t") s"

# The heads database on the host, read from a copy (the volume stays as the server left it).
[ -f "$data/heads.sqlite3" ] || fail "no heads.sqlite3 in the data volume on the host ($(ls -A "$data"))"
owner="$(stat -c %u "$data/heads.sqlite3")"
[ "$owner" = 10001 ] || fail "heads.sqlite3 on the host belongs to uid $owner, expected 10001"
mkdir "$work/db-copy" && cp "$data"/heads.sqlite3* "$work/db-copy/"
python3 - "$work/db-copy/heads.sqlite3" <<'EOF' || fail "the head 'kinds' is not in heads.sqlite3 on the host"
import sqlite3, sys
dump = "\n".join(sqlite3.connect(sys.argv[1]).iterdump())
sys.exit(0 if "'kinds'" in dump else 1)
EOF
ok "the head 'kinds' is in $data/heads.sqlite3 on the host (uid 10001)"

say "== times: base ${times[base]}, build ${times[build]}, cold start to ready ${times[ready]}, all $(elapsed "$started") s; image $size"
say "container-test: $passed passed, 0 failed"
exit 0
}
