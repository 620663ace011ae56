#!/bin/sh
# Installs Debian's etcd-server (the `etcd` binary bench/etcd.ts compares against) when
# `etcd` is not on PATH. The package index is refreshed only when apt does not know the
# package yet (a fresh image ships without lists), so repeat runs stay offline.
#
#   sh bench/install-etcd.sh        # as root, or as a user with sudo
set -eu

if command -v etcd >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=
elif command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
else
  echo "install-etcd: etcd is not on PATH and installing it needs root (or sudo)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-etcd: etcd is not on PATH and apt-get is missing; install etcd 3.4+ by hand" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# `apt-cache policy` prints "Candidate: (none)" or nothing at all when the lists lack it.
candidate=$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  $SUDO apt-get update -q
fi

# The package also ships a systemd unit that starts a default member on 2379/2380 where
# systemd runs; the benchmark never uses it (its members listen on OS-chosen ports).
$SUDO apt-get install -y -q --no-install-recommends etcd-server

if ! command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: etcd-server installed but etcd is still not on PATH" >&2
  exit 1
fi
