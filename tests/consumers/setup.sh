#!/usr/bin/env bash
# Installs the real consumers the sink tests feed: rsyslog (rsyslogd with mmpstrucdata) and
# Debian's prometheus-node-exporter.
#
#   bash tests/consumers/setup.sh [PYTHON]     (PYTHON: the venv's python, default .venv/bin/python)
#
# As root with Debian's apt: rsyslog is installed with apt-get when missing. node_exporter is
# *unpacked* from Debian's package into <venv>/consumers (apt-get download + dpkg-deb -x), not
# installed: installing it would enable and start a system service listening on every interface
# (port 9100). The tests start their own, on 127.0.0.1 only, and stop it.
# Otherwise: says what is missing and exits 0; those tests then skip, naming the packages.
# Never fails the build: exit status 0 always.
set -uo pipefail

PY=${1:-.venv/bin/python}
say() { echo "consumers-setup: $*"; }

if [[ $(uname -s) != Linux ]] || ! command -v dpkg-query >/dev/null 2>&1; then
  exit 0
fi
if [[ ${PORTBELL_SKIP_CONSUMERS_SETUP:-} == 1 ]]; then
  say "PORTBELL_SKIP_CONSUMERS_SETUP=1: not installing anything"
  exit 0
fi

VENV=$(cd "$(dirname "$PY")/.." 2>/dev/null && pwd) || VENV=.venv
DEST="$VENV/consumers"
need_rsyslog=0; need_exporter=0
command -v rsyslogd >/dev/null 2>&1 || [[ -x /usr/sbin/rsyslogd ]] || need_rsyslog=1
command -v prometheus-node-exporter >/dev/null 2>&1 || [[ -x "$DEST/usr/bin/prometheus-node-exporter" ]] || need_exporter=1
(( need_rsyslog || need_exporter )) || exit 0

if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  say "not root (or no apt-get): the tests with real consumers will skip. To run them (Debian/Ubuntu):"
  (( need_rsyslog )) && say "  apt-get install --no-install-recommends rsyslog"
  (( need_exporter )) && say "  apt-get install --no-install-recommends prometheus-node-exporter"
  exit 0
fi

log=$(mktemp /tmp/portbell-consumers-apt.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -q >"$log" 2>&1; then
  say "apt-get update failed (log: $log); the tests with real consumers may skip"
  exit 0
fi
if (( need_rsyslog )); then
  say "installing rsyslog"
  apt-get install -y -q --no-install-recommends rsyslog >>"$log" 2>&1 || say "apt-get install rsyslog failed (log: $log)"
fi
if (( need_exporter )); then
  say "unpacking Debian's prometheus-node-exporter into $DEST"
  work=$(mktemp -d /tmp/portbell-consumers.XXXXXX)
  chmod 755 "$work"  # apt's download sandbox user writes here
  if (cd "$work" && apt-get download -q prometheus-node-exporter >>"$log" 2>&1) \
      && mkdir -p "$DEST" && dpkg-deb -x "$work"/prometheus-node-exporter_*.deb "$DEST" >>"$log" 2>&1; then
    :
  else
    say "could not unpack prometheus-node-exporter (log: $log); its tests will skip"
  fi
  rm -rf "$work"
fi
rm -f "$log"
exit 0
