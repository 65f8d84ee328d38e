# shellcheck shell=bash
# Shared helpers for infra/scripts/{up,down,models}.sh. Source it; do not execute it.
#
# Layout
#   REPO_ROOT            the clone this script lives in
#   INFRA_DIR            per-clone data, logs, pid files      (default <repo>/.infra, gitignored)
#   TENANT_RAG_CACHE     per-machine cache shared by clones   (default /var/cache/tenant-rag):
#                        Weaviate binary, Go module/build caches, Kafka jars
# Every server binds 127.0.0.1 on a fixed non-default port (override with the TENANT_RAG_*_PORT vars).

TR_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TR_LIB_DIR/../.." && pwd)"
INFRA_DIR="${INFRA_DIR:-$REPO_ROOT/.infra}"
TENANT_RAG_CACHE="${TENANT_RAG_CACHE:-/var/cache/tenant-rag}"
ENV_FILE="${TENANT_RAG_ENV_FILE:-$REPO_ROOT/.env.infra}"
PID_DIR="$INFRA_DIR/pids"

# ---- versions --------------------------------------------------------------------------------
KAFKA_VERSION="4.1.2"
KAFKA_LOG4J_VERSION="2.25.3"
WEAVIATE_VERSION="v1.39.3"   # v1.39.4..v1.39.7 need a module the Go proxy refuses (ENGINES.md)
PG_MAJOR=15

# ---- ports (all 127.0.0.1) -------------------------------------------------------------------
# Each can be set alone (TENANT_RAG_PG_PORT=...), or all shifted at once by TENANT_RAG_PORT_OFFSET
# (e.g. 100: a second clone on the same machine; .ci/run picks one when the defaults are taken).
# The offset a clone's servers were started with is remembered in INFRA_DIR/port-offset, so a
# later up.sh/down.sh in the same clone finds them without the variable.
if [ -z "${TENANT_RAG_PORT_OFFSET:-}" ] && [ -s "$INFRA_DIR/port-offset" ]; then
  TENANT_RAG_PORT_OFFSET=$(tr -dc '0-9' <"$INFRA_DIR/port-offset")
fi
_TR_OFF="${TENANT_RAG_PORT_OFFSET:-0}"
PG_PORT="${TENANT_RAG_PG_PORT:-$((25432 + _TR_OFF))}"
REDIS_PORT="${TENANT_RAG_REDIS_PORT:-$((26379 + _TR_OFF))}"
KAFKA_PORT="${TENANT_RAG_KAFKA_PORT:-$((29092 + _TR_OFF))}"
KAFKA_CONTROLLER_PORT="${TENANT_RAG_KAFKA_CONTROLLER_PORT:-$((29093 + _TR_OFF))}"
WEAVIATE_PORT="${TENANT_RAG_WEAVIATE_PORT:-$((28080 + _TR_OFF))}"
WEAVIATE_GRPC_PORT="${TENANT_RAG_WEAVIATE_GRPC_PORT:-$((28051 + _TR_OFF))}"
WEAVIATE_GOSSIP_PORT="${TENANT_RAG_WEAVIATE_GOSSIP_PORT:-$((28946 + _TR_OFF))}"
WEAVIATE_DATA_PORT="${TENANT_RAG_WEAVIATE_DATA_PORT:-$((28947 + _TR_OFF))}"
WEAVIATE_RAFT_PORT="${TENANT_RAG_WEAVIATE_RAFT_PORT:-$((28300 + _TR_OFF))}"
WEAVIATE_RAFT_RPC_PORT="${TENANT_RAG_WEAVIATE_RAFT_RPC_PORT:-$((28301 + _TR_OFF))}"
ALL_PORTS=("$PG_PORT" "$REDIS_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$WEAVIATE_PORT" "$WEAVIATE_GRPC_PORT"
           "$WEAVIATE_GOSSIP_PORT" "$WEAVIATE_DATA_PORT" "$WEAVIATE_RAFT_PORT" "$WEAVIATE_RAFT_RPC_PORT")

ALL_SERVICES=(postgres redis kafka weaviate)

# ---- logging ---------------------------------------------------------------------------------
_tr_ts() { date +%H:%M:%S; }
log()  { printf '[infra %s] %s\n' "$(_tr_ts)" "$*" >&2; }
warn() { printf '[infra %s] WARNING: %s\n' "$(_tr_ts)" "$*" >&2; }
err()  { printf '[infra %s] ERROR: %s\n' "$(_tr_ts)" "$*" >&2; }
die()  { err "$*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
now_ms() { date +%s%3N; }
# elapsed_since <start_ms> -> "1.234s"
elapsed_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%03ds' $((d / 1000)) $((d % 1000)); }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command with root rights (directly as root, else via passwordless sudo).
as_root() {
  if is_root; then "$@"
  elif have sudo && sudo -n true 2>/dev/null; then sudo -n "$@"
  else err "needs root to run: $*"; return 1
  fi
}

# ---- apt -------------------------------------------------------------------------------------
_TR_APT_UPDATED=0
# apt_install <pkg>...: installs what is missing; `apt-get update` at most once per script run,
# and only when a first install attempt fails (the lists are usually there already).
# Package maintainer scripts must not start system-wide daemons (redis on 6379, the
# postgresql "main" cluster on 5432): a temporary policy-rc.d forbids service starts.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  have apt-get || { err "apt-get not found; install manually: ${missing[*]}"; return 1; }
  log "apt-get install ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d placed=0 rc=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && placed=1
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$INFRA_DIR/logs/apt.log" 2>&1; then
    if [ "$_TR_APT_UPDATED" -eq 0 ]; then
      log "apt-get update (install failed once; refreshing package lists)"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$INFRA_DIR/logs/apt.log" 2>&1 || true
      _TR_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$INFRA_DIR/logs/apt.log" 2>&1 || rc=$?
  fi
  [ "$placed" -eq 1 ] && as_root rm -f "$policy"
  if [ "$rc" -ne 0 ]; then err "apt-get install ${missing[*]} failed (see $INFRA_DIR/logs/apt.log)"; tail -n 5 "$INFRA_DIR/logs/apt.log" >&2; fi
  return "$rc"
}

# ---- ports and waiting -----------------------------------------------------------------------
# port_open <port> [host]: true when something accepts TCP connections there.
port_open() {
  local port=$1 host=${2:-127.0.0.1}
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Who listens on a port (best effort, for error messages).
port_owner() {
  if have ss; then ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1; fi
}

# wait_until <timeout_s> <what> <cmd...>: polls cmd every 0.2 s.
# Optional: set TR_WAIT_PID to a pid; if it dies, stop waiting early.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "${TR_WAIT_PID:-}" ] && ! pid_alive "$TR_WAIT_PID"; then
      err "$what: process $TR_WAIT_PID exited before becoming ready"; return 1
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then err "$what: not ready after ${timeout}s"; return 1; fi
    sleep 0.2
  done
}

# ---- pid files -------------------------------------------------------------------------------
# pid_alive <pid>: exists and is not a zombie (in containers whose pid 1 does not reap, a dead
# detached server lingers as a zombie and `kill -0` still succeeds).
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  local st; st=$(sed -n 's/^[0-9]* ([^)]*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ "$st" != "Z" ] && [ "$st" != "X" ]
}

pid_file() { printf '%s/%s.pid' "$PID_DIR" "$1"; }

# read_pid <svc> -> prints the recorded pid (empty if none)
read_pid() { local f; f=$(pid_file "$1"); [ -s "$f" ] && head -n1 "$f" | tr -dc '0-9'; }

# pid_matches <pid> <pattern>: pid alive and its command line contains pattern
# (guards against a recycled pid belonging to something else).
pid_matches() {
  local pid=$1 pat=$2
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# svc_pid <svc> -> pid if the recorded process is alive and is what we started
svc_pid() {
  local svc=$1 pid pat
  pid=$(read_pid "$svc") || true
  case "$svc" in
    postgres) pat="postgres" ;; redis) pat="redis-server" ;;
    kafka) pat="kafka.Kafka" ;; weaviate) pat="weaviate-server" ;; *) pat="$svc" ;;
  esac
  if pid_matches "$pid" "$pat"; then printf '%s' "$pid"; return 0; fi
  return 1
}

# start_bg <svc> <logfile> <cmd...>: start detached (own session, no stdin), record the pid.
start_bg() {
  local svc=$1 logf=$2; shift 2
  mkdir -p "$PID_DIR" "$(dirname "$logf")"
  # setsid execs in place (we are not a process-group leader), so $! is the server's pid.
  # fds 8/9 are the scripts' lock files: the server must not inherit (and hold) them.
  setsid "$@" >"$logf" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$svc")"
  printf '%s' "$pid"
}

# stop_pid <name> <pid> [signal] [timeout_s]: signal, wait, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 sig=${3:-TERM} timeout=${4:-20}
  pid_alive "$pid" || return 0
  log "stopping $name (pid $pid, SIG$sig)"
  kill -s "$sig" "$pid" 2>/dev/null || true
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  while pid_alive "$pid"; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      warn "$name (pid $pid) still running after ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.3
      break
    fi
    sleep 0.2
  done
}

# ---- health checks (used by up.sh, down.sh and the .env.infra writer) -------------------------
pg_bin() { printf '/usr/lib/postgresql/%s/bin/%s' "$PG_MAJOR" "$1"; }
check_postgres() {
  local isready; isready=$(pg_bin pg_isready); [ -x "$isready" ] || isready=pg_isready
  "$isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}
check_redis() {
  if have redis-cli; then [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
  else
    # no client: speak RESP by hand
    local reply
    reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "PING\r\n" >&3 && head -c 7 <&3' "$REDIS_PORT" 2>/dev/null)
    [ "${reply%$'\r'}" = "+PONG" ]
  fi
}
check_kafka() {
  port_open "$KAFKA_PORT" || return 1
  # The broker is only usable once "Kafka Server started" was logged.
  grep -q "Kafka Server started" "$INFRA_DIR/kafka/kafka.log" 2>/dev/null || return 1
}
check_weaviate() {
  curl -fs -m 2 -o /dev/null "http://127.0.0.1:$WEAVIATE_PORT/v1/.well-known/ready"
}

# ---- .env.infra ------------------------------------------------------------------------------
# Rewrites ENV_FILE with the addresses of the servers that answer right now.
write_env_file() {
  local tmp="$ENV_FILE.tmp.$$" up=()
  {
    printf '# Written by infra/scripts (up.sh/down.sh) on %s. Only servers that answered are listed.\n' "$(date -u +%FT%TZ)"
    printf '# Use: set -a; source .env.infra; set +a\n'
    if check_postgres; then
      local pw; pw=$(cat "$INFRA_DIR/postgres/tenant_rag.password" 2>/dev/null || true)
      if [ -n "$pw" ]; then
        printf "export DATABASE_URL='postgres://tenant_rag:%s@127.0.0.1:%s/tenant_rag'\n" "$pw" "$PG_PORT"
        up+=(postgres)
      fi
    fi
    if check_redis; then
      printf "export REDIS_URL='redis://127.0.0.1:%s'\n" "$REDIS_PORT"; up+=(redis)
    fi
    if check_kafka; then
      printf "export KAFKA_BROKERS='127.0.0.1:%s'\n" "$KAFKA_PORT"
      printf "export KAFKAJS_NO_PARTITIONER_WARNING=1\n"; up+=(kafka)
    fi
    if check_weaviate; then
      printf "export WEAVIATE_URL='http://127.0.0.1:%s'\n" "$WEAVIATE_PORT"
      printf "export WEAVIATE_GRPC_PORT=%s\n" "$WEAVIATE_GRPC_PORT"; up+=(weaviate)
    fi
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
  log "wrote $ENV_FILE (${up[*]:-no servers answering})"
}
