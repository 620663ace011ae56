#!/bin/sh
# Installs Debian's `faketime` package (and with it libfaketime.so.1, which the `skew`
# fault of `kv chaos` preloads into a node) when the library is not there yet. The
# package index is refreshed only when apt does not know the package (a fresh image
# ships without lists), so repeat runs stay offline and change nothing.
#
#   sh lib/chaos/install-faketime.sh        # as root, or as a user with sudo
#
# It lives beside lib/chaos/faketime.ts, which looks for the library in the same
# places: the skew fault is part of `kv chaos`, not of the tests alone, so its
# installer ships with the chaos code. Exit 0 when the library is present afterwards.
set -eu

find_lib() {
  for dir in /usr/lib/x86_64-linux-gnu/faketime /usr/lib/aarch64-linux-gnu/faketime \
    /usr/lib/faketime /usr/local/lib/faketime /usr/lib64/faketime; do
    if [ -f "$dir/libfaketime.so.1" ]; then
      echo "$dir/libfaketime.so.1"
      return 0
    fi
  done
  return 1
}

if find_lib >/dev/null; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=
elif command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
else
  echo "install-faketime: libfaketime.so.1 is missing and installing it needs root (or sudo)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-faketime: libfaketime.so.1 is missing and apt-get is not available; install libfaketime 0.9.8+ by hand" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# `apt-cache policy` prints "Candidate: (none)" or nothing at all when the lists lack it.
candidate=$(apt-cache policy faketime 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  $SUDO apt-get update -q
fi

$SUDO apt-get install -y -q --no-install-recommends faketime

if ! lib=$(find_lib); then
  echo "install-faketime: faketime installed but libfaketime.so.1 is in none of the known directories" >&2
  exit 1
fi
echo "install-faketime: $lib"
