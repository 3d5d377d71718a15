#!/usr/bin/env bash
# Installs what the tray's desktop tests need: a virtual desktop (Xvfb, trayer, xfce4-panel as a
# StatusNotifierItem host, dunst and xfce4-notifyd, a private
# session bus, xdotool, xclip) and the Python GObject bindings in the venv.
#
#   bash tests/desktop/setup.sh [PYTHON]      (PYTHON: the venv's python, default .venv/bin/python)
#
# As root with Debian's apt: installs what is missing (one `apt-get update` first), then builds
# PyGObject<3.51, pycairo and dbus-python into the venv when they are missing.
# Otherwise: says which packages are missing and exits 0; the desktop tests then skip, naming them.
# Never fails the build: exit status 0 always (the tests report what is missing).
set -uo pipefail

PY=${1:-.venv/bin/python}
APT_PKGS=(
  xvfb xdotool x11-utils trayer dunst libnotify-bin dbus dbus-bin libglib2.0-bin fonts-dejavu-core
  gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 xclip
  xfce4-panel xfconf xfce4-notifyd
  gcc libc6-dev pkg-config libgirepository1.0-dev libcairo2-dev libdbus-1-dev
)
# PyGObject 3.51+ needs girepository-2.0 (GLib >= 2.80); Debian 12 has GLib 2.74.
PIP_PKGS=("PyGObject<3.51" "pycairo" "dbus-python")

say() { echo "desktop-setup: $*"; }

if [[ $(uname -s) != Linux ]]; then
  exit 0  # the desktop tests are Linux-only
fi
if [[ ${PORTBELL_SKIP_DESKTOP_SETUP:-} == 1 ]]; then
  say "PORTBELL_SKIP_DESKTOP_SETUP=1: not installing anything"
  exit 0
fi

# a Debian-built Python needs its headers to build the bindings
if [[ -x $PY ]] && [[ $("$PY" -c 'import sys; print(sys.base_prefix)' 2>/dev/null) == /usr ]]; then
  APT_PKGS+=(python3-dev)
fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

if (( ${#missing[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${#missing[@]} Debian packages for the desktop tests: ${missing[*]}"
    log=$(mktemp /tmp/portbell-desktop-apt.XXXXXX)
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -q >"$log" 2>&1 \
        && apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
      rm -f "$log"
    else
      say "apt-get failed (log: $log); the desktop tests will skip"
      tail -n 5 "$log" | sed 's/^/desktop-setup:   /'
      exit 0
    fi
  else
    say "not root (or no apt-get): cannot install the desktop test packages."
    say "the desktop tests will skip. To run them, install (Debian/Ubuntu):"
    say "  apt-get install --no-install-recommends ${missing[*]}"
    say "  $PY -m pip install ${PIP_PKGS[*]@Q}"
    exit 0
  fi
fi

if [[ ! -x $PY ]]; then
  say "no python at $PY: skipping the venv packages"
  exit 0
fi
if ! "$PY" -c 'import gi, cairo, dbus' >/dev/null 2>&1; then
  say "building ${PIP_PKGS[*]} into the venv (20-60 s the first time)"
  log=$(mktemp /tmp/portbell-desktop-pip.XXXXXX)
  if "$PY" -m pip install -q --disable-pip-version-check "${PIP_PKGS[@]}" >"$log" 2>&1; then
    rm -f "$log"
  else
    say "pip failed (log: $log); the desktop tests will skip"
    tail -n 5 "$log" | sed 's/^/desktop-setup:   /'
  fi
fi
exit 0
