# matrix-regservice's image: `docker build -t matrix-regservice .` from a clone. README: Running with Docker.
# Both stages' bases are build arguments, so that a build can use images of its own (the tests build without a
# registry): the builder needs node and npm, the runtime node alone (glibc: the addons' prebuilds are for glibc and
# musl both, but this image is tested on Debian's). Given empty (compose's `args` with the variable unset), each
# takes its default.
ARG BUILD_BASE
ARG RUNTIME_BASE

FROM ${BUILD_BASE:-docker.io/library/node:22-bookworm} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# The addons (libsecp256k1, LevelDB) ship prebuilt binaries: no install script, no compiler. Where npm's downloads go
# through a proxy with a certificate authority of its own, give its file as the build secret npm_ca
# (`docker build --secret id=npm_ca,src=FILE .`): it is read for this step only and stays out of every layer.
RUN --mount=type=secret,id=npm_ca \
  if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
  npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN node_modules/.bin/tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_BASE:-docker.io/library/node:22-bookworm-slim}
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json run.sh.template LICENSE CHANGELOG.md ./
COPY bin ./bin
COPY templates ./templates
# The uid and gid matrixdotorg/synapse runs as: genconfig --container writes into Synapse's volume files Synapse can
# read (0600, owned by 991), and the service reads its own copies, without either volume being chowned.
RUN mkdir -p /var/lib/matrix-regservice && chown 991:991 /var/lib/matrix-regservice
USER 991:991
ENV NODE_ENV=production \
    HOME=/var/lib/matrix-regservice \
    MATRIX_REGSERVICE_METRICS_PORT=9009
WORKDIR /var/lib/matrix-regservice
VOLUME /var/lib/matrix-regservice
EXPOSE 8009
# The daemon handles SIGTERM itself as PID 1: it and its workers finish the requests in flight, it exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["node", "/app/dist/container/healthcheck.js"]
ENTRYPOINT ["node", "--max-semi-space-size=4", "--heap-growing-percent=10", "--v8-pool-size=1", "--no-concurrent-recompilation", "/app/bin/matrix-regservice"]
# The daemon, on what genconfig --container wrote. `docker compose run --rm regservice genconfig …` replaces this.
CMD ["--config", "/var/lib/matrix-regservice/regservice.yaml"]
