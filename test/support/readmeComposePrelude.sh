# The compose scenarios' part of the README test's substitution table (README, "Tests"): this machine has podman and
# Compose v1 (docker-compose) over podman's Docker-compatible socket (DOCKER_HOST), and no docker CLI. Image names,
# ports, volume names, the project, the subnet and the network come from the variables the README names, which the
# test sets in the environment (they win over .env).

docker() {
  case "$1" in
    # `docker compose` (v2) is `docker-compose` (v1) here.
    compose)
      shift
      docker-compose "$@"
      ;;
    # The README's network, on the test's subnet and under the test's name (TRANSPORT_SUBNET, NETWORK).
    network)
      if [ "$*" != "network create --subnet 172.28.56.0/24 photon-transport" ]; then
        echo "docker $*: not in the README test's substitution table" >&2
        return 1
      fi
      podman network create --subnet "$TRANSPORT_SUBNET.0/24" "$NETWORK"
      ;;
    *) podman "$@" ;;
  esac
}
