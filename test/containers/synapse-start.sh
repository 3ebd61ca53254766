#!/bin/sh
# A stand-in for matrixdotorg/synapse's start.py, for an image made from the test chroot's Debian Synapse: the same
# /data volume, `generate` writing /data/homeserver.yaml for SYNAPSE_SERVER_NAME (listening on every address, owned by
# UID:GID, 991:991 unless set), and otherwise Synapse run as UID:GID on that file.
set -eu
uid=${UID:-991}
gid=${GID:-991}
if [ "${1:-}" = generate ]; then
  cd /data # the generated log configuration writes its file in the current directory
  python3 -m synapse.app.homeserver --server-name "$SYNAPSE_SERVER_NAME" --report-stats "${SYNAPSE_REPORT_STATS:-no}" \
    --config-path /data/homeserver.yaml --config-directory /data --data-directory /data --generate-config --open-private-ports
  chown -R "$uid:$gid" /data
  exit 0
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups python3 -m synapse.app.homeserver --config-path /data/homeserver.yaml
