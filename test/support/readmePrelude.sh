# The executable README's substitution table, as shell functions (README, "Tests"): what the test machine cannot run
# as written. Sourced by bash before the README's blocks; everything else in a block runs as written.

# sudo: the machine's shell is root already; `sudo -u USER CMD` runs CMD as USER.
sudo() {
  if [ "$1" = -u ]; then
    local user=$2
    shift 2
    setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
  else
    "$@"
  fi
}

# sudoedit FILE, where the README has the operator type the database's password into FILE: the test's password.
sudoedit() { printf '%s\n' "$README_DB_PASSWORD" >"$1"; }

# ssh HOST CMD: CMD in the directory the machines of a joined run share for HOST, whose files the machine at HOST
# takes into its home directory (take_transfers) as if CMD had run there.
ssh() {
  local host=${1#*@}
  shift
  mkdir -p "/run/readme-transfer/$host"
  (cd "/run/readme-transfer/$host" && bash -c "$*")
}
take_transfers() { cp -a "/run/readme-transfer/$1/." /root/; }

# Debian's postgresql unit starts and stops its clusters' units: each cluster, with pg_ctlcluster.
postgresql_clusters() {
  local dir
  for dir in /etc/postgresql/*/*/; do
    dir=${dir%/}
    pg_ctlcluster "$(basename "$(dirname "$dir")")" "$(basename "$dir")" "$1" || return 1
  done
}

unit_file() {
  local dir
  for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    if [ -f "$dir/$1.service" ]; then
      echo "$dir/$1.service"
      return 0
    fi
  done
  echo "no unit $1" >&2
  return 1
}
# The last value of a unit setting (the one systemd uses).
unit_get() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

# How the test knows a started unit is up (systemd: Type=notify for Synapse; an operator waits for it otherwise).
unit_wait() {
  local url
  case "$1" in
    matrix-synapse) url=http://127.0.0.1:8008/_matrix/client/versions ;;
    matrix-regservice) url=http://127.0.0.1:8009/regapp/1/register ;;
    *) return 0 ;;
  esac
  node -e '
    const [url, log] = process.argv.slice(1);
    const deadline = Date.now() + 90_000;
    const poll = () => fetch(url).then(() => process.exit(0), () => {
      if (Date.now() > deadline) { console.error(`${url} did not answer; ${log}:\n` + require("fs").readFileSync(log, "utf8").slice(-3000)); process.exit(1); }
      setTimeout(poll, 250);
    });
    poll();' "$url" "/var/log/unit-$1.log"
}

# systemctl start/enable --now: the unit's ExecStartPre and ExecStart as its User (and Group, else the user's
# group), from its WorkingDirectory, with its EnvironmentFile, in the background; its output in /var/log/unit-NAME.log.
unit_start() {
  local name=${1%.service} file user group dir envfile pre start
  if [ "$name" = postgresql ]; then
    postgresql_clusters start
    return
  fi
  file=$(unit_file "$name") || return 1
  user=$(unit_get "$file" User)
  user=${user:-root}
  group=$(unit_get "$file" Group)
  group=${group:-$(id -g "$user")}
  dir=$(unit_get "$file" WorkingDirectory)
  envfile=$(unit_get "$file" EnvironmentFile)
  pre=$(unit_get "$file" ExecStartPre)
  start=$(unit_get "$file" ExecStart)
  (
    cd "${dir:-/}" || exit 1
    # systemd gives a unit none of the caller's environment: the machine's CA for the public name is not the unit's.
    unset NODE_EXTRA_CA_CERTS
    if [ -n "$envfile" ] && [ -f "${envfile#-}" ]; then set -a && . "${envfile#-}" && set +a; fi
    as_unit() { setpriv --reuid="$user" --regid="$group" --init-groups -- sh -c "exec $1"; }
    if [ -n "$pre" ]; then as_unit "$pre" || exit 1; fi
    exec setpriv --reuid="$user" --regid="$group" --init-groups -- sh -c "exec $start"
  ) >>"/var/log/unit-$name.log" 2>&1 &
  echo $! >"/run/unit-$name.pid"
  unit_wait "$name"
}

unit_stop() {
  local name=${1%.service} pid
  if [ "$name" = postgresql ]; then
    postgresql_clusters stop
    return
  fi
  [ -f "/run/unit-$name.pid" ] || return 0
  pid=$(cat "/run/unit-$name.pid")
  rm -f "/run/unit-$name.pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

systemctl() {
  case "$1" in
    daemon-reload) ;;
    enable)
      shift
      if [ "$1" = --now ]; then
        shift
        unit_start "$1"
      fi
      ;;
    start) unit_start "$2" ;;
    stop) unit_stop "$2" ;;
    restart)
      unit_stop "$2"
      unit_start "$2"
      ;;
    reload) kill -HUP "$(cat "/run/unit-${2%.service}.pid")" ;;
    *)
      echo "systemctl $*: not in the README test's substitution table" >&2
      return 1
      ;;
  esac
}

# The processes below PID (from /proc: the machine has no procps).
descendants() {
  local child
  for child in $(awk -v parent="$1" '$4 == parent { print $1 }' /proc/[0-9]*/stat 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# Ends the last background block and everything it started (SIGNAL: INT as Ctrl-C sends), waiting until they are gone.
stop_background() {
  local pid pids
  pid=$(cat /run/readme-background.pid)
  pids="$pid $(descendants "$pid")"
  kill -"$1" $pids 2>/dev/null || true
  for _ in $(seq 1 300); do
    local alive=""
    for pid in $pids; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ -n "$alive" ] || return 0
    sleep 0.1
  done
  echo "stop_background: still running after 30 s" >&2
  return 1
}
