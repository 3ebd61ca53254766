#!/bin/bash
# Installs and builds what `npm test` needs on a Debian machine, as root; each part is kept once made, so a second run
# takes seconds. CI's .ci/run calls it too. Its parts:
#   Debian's packages: nginx-light (the deployment tests' real nginx), systemd (systemd-analyze verify of the unit
#     genconfig writes), postgresql (the PostgreSQL store's tests start their own server), podman, buildah, runc,
#     docker-compose and mmdebstrap (the container test), prometheus (promtool and the monitoring test's Prometheus);
#   test/synapse/provision.sh: the real Synapse, Debian's matrix-synapse in a sid chroot (about a minute);
#   test/containers/build-bases.sh: the container test's base images (about two minutes).
# Downloads are tried again after a transient failure (test/support/retry.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/support/retry.sh"
if [ "$(id -u)" != 0 ]; then
  echo "test/provision.sh installs Debian packages and builds a chroot and container images: run it as root (sudo test/provision.sh)" >&2
  exit 1
fi

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v podman >/dev/null 2>&1 || missing+=(podman buildah runc) # with what they recommend: netavark, aardvark-dns
lean=() # without what they recommend (docker-compose's is the Docker daemon)
command -v docker-compose >/dev/null 2>&1 || lean+=(docker-compose)
command -v mmdebstrap >/dev/null 2>&1 || lean+=(mmdebstrap)
command -v promtool >/dev/null 2>&1 || lean+=(prometheus) # the monitoring test's Prometheus and promtool, never started as a service
if [ ${#missing[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
  apt_get() { DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o Acquire::Retries=3 "$@"; }
  retry apt_get update -qq
  # RUNLEVEL=1: the packages' own services (nginx, PostgreSQL) are not started; the tests start their own.
  [ ${#missing[@]} -eq 0 ] || retry apt_get install -y -qq "${missing[@]}" >/dev/null
  [ ${#lean[@]} -eq 0 ] || retry apt_get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi
"$here/synapse/provision.sh"
"$here/containers/build-bases.sh"
echo "test/provision.sh: ready for npm test"
