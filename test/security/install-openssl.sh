#!/bin/sh
# Installs Debian's openssl (the `openssl` command `kv start --tls` and the TLS tests make
# certificates with) when it is not on PATH. Never fails the run: without openssl the TLS
# tests report themselves skipped by name, and .ci/run fails on skipped tests.
#
#   sh test/security/install-openssl.sh        # as root, or as a user with sudo
set -u

command -v openssl >/dev/null 2>&1 && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=
elif command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
else
  echo "install-openssl: openssl is not on PATH and installing it needs root (or sudo)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-openssl: openssl is not on PATH and apt-get is missing; install openssl by hand" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package index only when apt does not know the package (a fresh image ships without lists).
candidate=$(apt-cache policy openssl 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  $SUDO apt-get update -q || true
fi
$SUDO apt-get install -y -q --no-install-recommends openssl || echo "install-openssl: apt-get install openssl failed" >&2
exit 0
