# Sourced by the provisioning scripts: `retry COMMAND...` runs a download again after a failure, 3 more times with
# 10, 20 and 40 s between, for a registry or mirror that fails for a moment; then it fails with the command's status.
retry() {
  retry_wait=10
  retry_try=1
  while :; do
    "$@" && return 0
    retry_status=$?
    if [ "$retry_try" -ge 4 ]; then
      echo "retry: $1 failed $retry_try times (status $retry_status); giving up" >&2
      return "$retry_status"
    fi
    echo "retry: $1 failed (status $retry_status); trying again in $retry_wait s" >&2
    sleep "$retry_wait"
    retry_wait=$((retry_wait * 2))
    retry_try=$((retry_try + 1))
  done
}
