#!/bin/sh
# Builds a Debian unstable chroot with the matrix-synapse package, for the end-to-end tests.
# Usage (as root): test/synapse/provision.sh [DIR]   (default: $SYNAPSE_ROOT or /var/tmp/matrix-regservice/synapse-root)
set -eu
root="${1:-${SYNAPSE_ROOT:-/var/tmp/matrix-regservice/synapse-root}}"
if [ -x "$root/usr/bin/python3" ] && chroot "$root" python3 -c 'import synapse' 2>/dev/null; then
  echo "synapse chroot ready at $root ($(chroot "$root" python3 -c 'import synapse; print(synapse.__version__)'))"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "provision.sh: building the Synapse chroot needs root" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi
rm -rf "$root.tmp"
mkdir -p "$(dirname "$root")"
mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' --include=matrix-synapse sid "$root.tmp"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "synapse chroot ready at $root ($(chroot "$root" python3 -c 'import synapse; print(synapse.__version__)'))"
