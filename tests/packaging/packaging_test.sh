#!/usr/bin/env bash
# Checks packaging/: the alert rules pass promtool, the dashboard is valid JSON whose metrics
# Runnel exports, the systemd unit passes systemd-analyze verify and has the hardening the
# service relies on, and the Dockerfile has its required parts.
# Usage: packaging_test.sh SOURCE_DIR
set -euo pipefail
src="$1"
pkg="$src/packaging"
fail() { echo "FAIL: $*" >&2; exit 1; }

promtool check rules "$pkg/prometheus/alerts.yml"

# Every runnel_/process_ metric named by the dashboard or the alerts is exported by metrics.cc
# (names of histograms are checked without their _bucket/_sum/_count suffix).
python3 -m json.tool "$pkg/grafana/runnel.json" > /dev/null || fail "dashboard is not JSON"
grep -q '"type": "datasource"' "$pkg/grafana/runnel.json" || fail "no data source variable"
names=$(grep -ohE '\b(runnel|process)_[a-z_]+' "$pkg/grafana/runnel.json" "$pkg/prometheus/alerts.yml" \
  | sed -E 's/_(bucket|sum|count)$//' | sort -u)
[ -n "$names" ] || fail "no metric names found"
for name in $names; do
  grep -q "\"$name\"" "$src/service/metrics.cc" || fail "$name is not exported by service/metrics.cc"
done

unit="$pkg/runnel.service"
for line in Type=notify WatchdogSec= DynamicUser=yes StateDirectory=runnel \
    ConfigurationDirectory=runnel ProtectSystem=strict NoNewPrivileges=yes \
    'CapabilityBoundingSet=$' SystemCallFilter=@system-service Restart=on-failure \
    TimeoutStopSec=; do
  grep -qE "^$line" "$unit" || fail "runnel.service lacks $line"
done
# TimeoutStopSec must exceed the default drain budget (service.shutdown_timeout: 20s).
stop=$(sed -nE 's/^TimeoutStopSec=([0-9]+)s$/\1/p' "$unit")
[ "${stop:-0}" -gt 20 ] || fail "TimeoutStopSec=${stop}s is not above the 20s drain budget"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's|/usr/local/bin/runnel|/bin/true|g' "$unit" > "$tmp/runnel.service"
systemd-analyze verify "$tmp/runnel.service"

docker="$pkg/Dockerfile"
for line in 'ARG BUILD_IMAGE=docker.io/library/debian:bookworm' \
    'ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim' 'FROM \$\{BUILD_IMAGE\} AS build' \
    'FROM \$\{RUNTIME_IMAGE\}' 'USER runnel' \
    'VOLUME \["/var/lib/runnel"\]' 'STOPSIGNAL SIGTERM' 'HEALTHCHECK .*' '  CMD curl -fsS http://127.0.0.1:9464/livez'; do
  grep -qE "^$line" "$docker" || fail "Dockerfile lacks $line"
done
echo "packaging: ok ($(echo "$names" | wc -w) metric names checked)"
