#!/usr/bin/env bash
# The container image built and run for real (podman with runc, as root), then the systemd unit
# under a real systemd as PID 1 in a container. Checks what users rely on: /livez and /readyz
# through the published port, a non-root user on a read-only root filesystem, the image's
# HEALTHCHECK, exact output from a mounted file source, SIGTERM draining to exit 0, a second
# container resuming on the same volume, a second one refused while the first runs (the
# state-directory lock), only linked libraries in the image (ldd); and for the unit: Type=notify
# readiness with STATUS=, systemctl stop draining with exit 0, systemctl reload (valid and
# invalid files), the watchdog restarting a stopped
# process, RestartPreventExitStatus=78, and systemd-analyze security's exposure score.
#
# No registry is reachable here: the Debian base image is made by debootstrap and imported,
# cached in podman's store under a tag keyed by the package list, and handed to the Dockerfile
# through its BUILD_IMAGE/RUNTIME_IMAGE arguments (their defaults are Debian's own images).
# The podman configuration (runc, no default ulimits: crun and the default ulimits do not work
# in this sandbox) is this test's own, through CONTAINERS_CONF; nothing on the system changes.
#
# Usage: tests/packaging/container_test.sh        (root; podman, runc, debootstrap installed)
# Prints a line per stage with its duration, and the image size and build time.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
golden="${RUNNEL_GOLDEN_DIR:-$src/../shared/golden}"
mirror="${RUNNEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${RUNNEL_IMAGE_CACHE:-/var/cache/runnel-test}"
work="$(mktemp -d)"
id="$$"
image="localhost/runnel:test-$id"
systemd_image="localhost/runnel-systemd:test-$id"
volume="runnel-test-$id"

cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

cleanup() {
  podman rm -f -t 0 "c1-$id" "c2-$id" "c3-$id" "s1-$id" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  podman rmi -f "$systemd_image" "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "container_test: FAIL: $*" >&2; exit 1; }
t0=$SECONDS
stage() { echo "container_test: $* ($((SECONDS - t0)) s so far)"; }

# Waits up to $2 seconds for command $1 (a string) to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# ---- Base image: debootstrap, imported once per package list.
base_key="$(echo "bookworm minbase $mirror" | sha256sum | cut -c1-12)"
base="localhost/runnel-debian:bookworm-$base_key"
if ! podman image exists "$base"; then
  rootfs="$cache/rootfs-$base_key"
  rm -rf "$rootfs"
  mkdir -p "$cache"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  tar -C "$rootfs" -c . | podman import -q - "$base" >/dev/null
  rm -rf "$rootfs"
  stage "base image $base made"
else
  stage "base image $base cached"
fi

# ---- The image, from packaging/Dockerfile unchanged but for the base images.
build_start=$SECONDS
podman build -q --format docker --network host --build-arg "BUILD_IMAGE=$base" --build-arg "RUNTIME_IMAGE=$base" \
  --build-arg CMAKE_ARGS=-DRUNNEL_WERROR=ON \
  -f "$src/packaging/Dockerfile" -t "$image" "$src" >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log"; fail "podman build"; }
build_seconds=$((SECONDS - build_start))
size=$(podman image inspect "$image" --format '{{.Size}}')
stage "image built in ${build_seconds} s, $((size / 1024 / 1024)) MiB"

missing=$(podman run --rm --entrypoint /usr/bin/ldd "$image" /usr/local/bin/runnel | grep 'not found' || true)
[ -z "$missing" ] || fail "libraries missing in the image: $missing"

# ---- The service in a container.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/runnel.yaml" <<'EOF'
service: { http_listen: "0.0.0.0:9464", state_dir: /var/lib/runnel/state,
           http_allow_unauthenticated: true, shutdown_timeout: 10s }
engine: { workers: 2, memory_budget: 256MiB }
checkpoint: { every: 10 batches, keep: 2 }
sources:
  clicks: { type: file, path: /data/clicks-clean.jsonl, max_records_per_batch: 1000 }
queries:
  - name: hourly_pages
    source: clicks
    batch_interval: 100ms
    event_time: { field: ts }
    window: 1h
    allowed_lateness: 10m
    group_by: [customer, url]
    aggregates:
      page_views: count
      visitors: { count_distinct: session_id }
      referrers: { count_values: referrer }
    sinks: [ { type: json_files, path: /var/lib/runnel/out } ]
EOF
chmod 644 "$work/runnel.yaml"
podman volume create "$volume" >/dev/null
# --health-interval disable: podman would schedule the HEALTHCHECK with systemd timers, and
# there is no systemd on this host; `podman healthcheck run` below runs it.
run_args=(--health-interval disable --read-only --tmpfs /tmp -v "$volume:/var/lib/runnel" -v "$work/runnel.yaml:/etc/runnel/runnel.yaml:ro"
  -v "$golden:/data:ro")
podman run -d --name "c1-$id" -p "127.0.0.1:$port:9464" "${run_args[@]}" "$image" >/dev/null
url="http://127.0.0.1:$port"
wait_for "curl -fsS $url/livez" 60 || { podman logs "c1-$id" | tail; fail "/livez through the published port"; }
wait_for "curl -fsS $url/readyz" 60 || fail "/readyz through the published port"
uid=$(podman exec "c1-$id" id -u)
[ "$uid" != 0 ] || fail "the service runs as root"
[ "$(podman exec "c1-$id" id -un)" = runnel ] || fail "the service does not run as runnel"
[ "$(podman inspect "c1-$id" --format '{{.HostConfig.ReadonlyRootfs}}')" = true ] || fail "root fs not read-only"
podman healthcheck run "c1-$id" >/dev/null || fail "podman healthcheck run"
records() { curl -fsS "$url/metrics" | awk '/^runnel_records_total\{/ {s += $2} END {print s + 0}'; }
wait_for '[ "$(records)" -ge 20000 ]' 120 || fail "the golden input was not read (records: $(records))"
stage "serving: livez/readyz, user $uid, read-only root, healthcheck ok, 20000 records"

out_dir="$(podman volume inspect "$volume" --format '{{.Mountpoint}}')/out/hourly_pages"
exact() {
  python3 - "$out_dir" "$golden/expected-clean.jsonl" <<'EOF'
import json, os, sys
out, expected = sys.argv[1], sys.argv[2]
latest = {}
for b in sorted((int(d[6:]), d) for d in os.listdir(out) if d.startswith("batch=")):
    for part in sorted(p for p in os.listdir(os.path.join(out, b[1])) if p.startswith("part-")):
        for line in open(os.path.join(out, b[1], part)):
            r = json.loads(line)
            latest[r["_id"]] = r
want = {json.loads(l)["_id"]: json.loads(l) for l in open(expected)}
sys.exit(0 if latest == want else 1)
EOF
}
wait_for exact 30 || fail "the output is not the golden aggregates"

# A second container on the same volume while the first runs: refused, nothing changed.
set +e
second=$(podman run --rm --name "c2-$id" "${run_args[@]}" "$image" 2>&1)
second_code=$?
set -e
[ "$second_code" = 75 ] || { echo "$second" | tail -5; fail "second container exit $second_code, want 75"; }
echo "$second" | grep -q "in use by another runnel process" || fail "second container's message"
curl -fsS "$url/readyz" >/dev/null || fail "the first container stopped serving"
stage "a second container on the volume is refused (75)"

stop_start=$SECONDS
podman stop -t 30 "c1-$id" >/dev/null
stop_seconds=$((SECONDS - stop_start))
code=$(podman inspect "c1-$id" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { podman logs "c1-$id" | tail; fail "podman stop: exit $code, want 0"; }
[ "$stop_seconds" -lt 30 ] || fail "podman stop took ${stop_seconds} s"
stage "podman stop drained and exited 0 in ${stop_seconds} s"

podman run -d --name "c3-$id" -p "127.0.0.1:$port:9464" "${run_args[@]}" "$image" >/dev/null
wait_for "curl -fsS $url/readyz" 60 || fail "the third container did not become ready"
sleep 2
[ "$(records)" = 0 ] || fail "the resumed container read $(records) records again"
podman logs "c3-$id" 2>&1 | grep -q 'recovered: next batch [1-9]' || fail "the resumed container did not recover"
exact || fail "the output changed after resuming"
podman stop -t 30 "c3-$id" >/dev/null
stage "a container after it resumed where the first stopped (nothing read twice)"

# ---- The unit under systemd as PID 1: the base image plus systemd, the shared libraries the
# image's runnel links (found by ldd in that image, so the list lives only in the Dockerfile),
# and the unit installed as its header says, with procps (ExecReload's /bin/kill, as on any
# standard Debian system; debootstrap's minimal base leaves it out). Not the runtime image itself: its VOLUME and its
# static /var/lib/runnel stand where StateDirectory= and DynamicUser= make their own.
libs=$(podman run --rm --entrypoint /bin/sh "$image" -c \
  'ldd /usr/local/bin/runnel | awk "/=> \// {print \$3}" | xargs -n1 readlink -f | xargs dpkg -S 2>/dev/null | cut -d: -f1 | sort -u' |
  tr '\n' ' ')
[ -n "$libs" ] || fail "could not list the image's library packages"
cid=$(podman create "$image")
podman cp "$cid:/usr/local/bin/runnel" "$work/runnel"
podman rm "$cid" >/dev/null
cp "$src/packaging/runnel.service" "$work/runnel.service"
cp "$golden/clicks-clean.jsonl" "$work/clicks-clean.jsonl"
sed -e 's|state_dir: /var/lib/runnel/state|state_dir: /var/lib/runnel|' \
    -e 's|http_listen: "0.0.0.0:9464"|http_listen: "127.0.0.1:9464"|' "$work/runnel.yaml" > "$work/unit.yaml"
cat > "$work/Containerfile.systemd" <<EOF
FROM $base
RUN apt-get update -q && apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus \\
      procps curl $libs && rm -rf /var/lib/apt/lists/*
COPY runnel /usr/local/bin/runnel
COPY runnel.service /etc/systemd/system/runnel.service
COPY unit.yaml /etc/runnel/runnel.yaml
COPY clicks-clean.jsonl /data/clicks-clean.jsonl
# The test's one change to the unit: a short watchdog, so a stopped process is caught in seconds.
RUN mkdir -p /etc/systemd/system/runnel.service.d \\
    && printf '[Service]\\nWatchdogSec=6s\\n' > /etc/systemd/system/runnel.service.d/test-watchdog.conf \\
    && systemctl enable runnel
CMD ["/sbin/init"]
EOF
podman build -q --format docker --network host -f "$work/Containerfile.systemd" -t "$systemd_image" "$work" \
  >"$work/build-systemd.log" 2>&1 || { tail -20 "$work/build-systemd.log"; fail "systemd image"; }
podman run -d --name "s1-$id" --privileged --systemd=always "$systemd_image" >/dev/null
in_unit() { podman exec "s1-$id" "$@"; }
prop() { in_unit systemctl show -p "$1" --value runnel; }
wait_for '[ "$(prop ActiveState)" = active ] && [ -n "$(prop StatusText)" ]' 90 ||
  { in_unit journalctl -u runnel --no-pager | tail -20; fail "runnel.service did not become active"; }
[ "$(prop SubState)" = running ] || fail "SubState $(prop SubState)"
status_text=$(prop StatusText)
stage "systemd: runnel.service active/running, STATUS=$status_text"

in_unit systemctl stop runnel
[ "$(prop Result)" = success ] || fail "systemctl stop: Result=$(prop Result)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "systemctl stop: exit $(prop ExecMainStatus)"
stage "systemctl stop drained, exit 0"

in_unit systemctl start runnel
wait_for '[ "$(prop ActiveState)" = active ]' 60 || fail "restart"
pid=$(prop MainPID)
in_unit /bin/sh -c "kill -STOP $pid"
# SIGABRT waits while the process is stopped; systemd kills it after TimeoutAbortSec (45 s).
wait_for '[ "$(prop MainPID)" != "$pid" ] && [ "$(prop ActiveState)" = active ]' 120 ||
  fail "the watchdog did not restart a stopped service (state $(prop ActiveState))"
in_unit journalctl -u runnel --no-pager | grep -q "Watchdog timeout" || fail "no watchdog timeout logged"
stage "the watchdog killed and restarted a SIGSTOPped service (NRestarts=$(prop NRestarts))"

pid=$(prop MainPID)
in_unit systemctl reload runnel ||
  { in_unit journalctl -u runnel --no-pager | tail -20; fail "systemctl reload of a valid config failed"; }
wait_for 'prop StatusText | grep -q "^reloaded (applied)"' 30 ||
  fail "no STATUS= after the reload (StatusText: $(prop StatusText))"
in_unit sh -c 'echo "bogus_key: 1" >> /etc/runnel/runnel.yaml'
if in_unit systemctl reload runnel 2>/dev/null; then fail "systemctl reload of an invalid config succeeded"; fi
[ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] ||
  fail "an invalid reload disturbed the service (state $(prop ActiveState))"
stage "systemctl reload: applied; an invalid file fails the reload, the service runs on"

in_unit systemctl restart runnel || true
sleep 5
[ "$(prop ActiveState)" = failed ] || fail "a bad config: ActiveState=$(prop ActiveState), want failed"
# A manual restart resets NRestarts: any automatic restart since would count.
[ "$(prop NRestarts)" = 0 ] ||
  { in_unit journalctl -u runnel --no-pager | tail -15; fail "a bad config was restarted ($(prop NRestarts) times)"; }
in_unit journalctl -u runnel --no-pager | grep -q "status=78" || fail "exit 78 not seen"
stage "a bad config: exit 78, not restarted"

exposure=$(in_unit systemd-analyze security runnel.service --no-pager | tail -1)
echo "container_test: $exposure"
echo "container_test: ok in $((SECONDS - t0)) s: image $((size / 1024 / 1024)) MiB, built in ${build_seconds} s"
