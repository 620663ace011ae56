#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the browser tests (test/browser), when missing.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo) and apt; where
# neither is at hand it says so and exits 0, and the browser tests then report themselves
# skipped by name (which makes .ci/run fail), so a missing browser is never silent.
set -u
CHROMIUM=${KV_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium yourself or set KV_CHROMIUM" >&2
  exit 0
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-chromium: not root and no password-less sudo; browser tests will be skipped" >&2
    exit 0
  fi
fi
echo "install-chromium: installing Debian's chromium (one-time, a few minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
# Fonts make the screenshots legible; --no-install-recommends keeps the install small.
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
  echo "install-chromium: apt-get could not install chromium; browser tests will be skipped" >&2
fi
exit 0
