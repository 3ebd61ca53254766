#!/bin/sh
# Builds a Debian unstable chroot with the matrix-synapse package, for the end-to-end tests (part of test/provision.sh),
# nginx-light and postgresql: the README's Debian deployment (and its database for two gates) runs in a copy of it as on
# an operator's machine. systemd-standalone-tmpfiles, not systemd, is what postgresql-common needs of systemd.
# Usage (as root): test/synapse/provision.sh [DIR]   (default: $SYNAPSE_ROOT or /var/tmp/matrix-regservice/synapse-root)
set -eu
. "$(dirname "$0")/../support/retry.sh"
root="${1:-${SYNAPSE_ROOT:-/var/tmp/matrix-regservice/synapse-root}}"
packages=matrix-synapse,nginx-light,postgresql,systemd-standalone-tmpfiles
if [ -x "$root/usr/bin/python3" ] && chroot "$root" python3 -c 'import synapse' 2>/dev/null; then
  if [ ! -x "$root/usr/sbin/nginx" ] || ! ls "$root"/usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    # A chroot made before nginx or postgresql was part of it (their scripts need /proc).
    unshare --mount --propagation private sh -c "mount -t proc proc '$root/proc' && chroot '$root' sh -c 'export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
      apt-get -o Acquire::Retries=3 update -qq &&
      apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends $(echo "$packages" | tr , " ") >/dev/null'"
  fi
  echo "synapse chroot ready at $root ($(chroot "$root" python3 -c 'import synapse; print(synapse.__version__)'))"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "provision.sh: building the Synapse chroot needs root" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  retry apt-get -o Acquire::Retries=3 update -qq
  DEBIAN_FRONTEND=noninteractive retry apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
rm -rf "$root.tmp"
mkdir -p "$(dirname "$root")"
# A failed try may leave a partial chroot: each starts on an empty directory.
build_chroot() {
  rm -rf "$root.tmp"
  mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Retries "3"' \
    --include="$packages" sid "$root.tmp"
}
retry build_chroot
rm -rf "$root"
mv "$root.tmp" "$root"
echo "synapse chroot ready at $root ($(chroot "$root" python3 -c 'import synapse; print(synapse.__version__)'))"
