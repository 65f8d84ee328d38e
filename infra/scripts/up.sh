#!/usr/bin/env bash
# Install (when missing) and start the real servers natively on 127.0.0.1, idempotently.
#
#   bash infra/scripts/up.sh [--strict] [--status] [postgres] [redis] [kafka] [weaviate]
#
# No names = all four. A server already running (our pid file, answering) is left alone.
# A server that fails is reported and skipped; the exit status is 0 unless --strict is given
# and some server did not come up. Afterwards <repo>/.env.infra lists (as `export` lines) the
# addresses of every server that answers: DATABASE_URL, REDIS_URL, KAFKA_BROKERS, WEAVIATE_URL,
# WEAVIATE_GRPC_PORT. Stop everything with infra/scripts/down.sh.
#
# Data, logs, pid files: ${INFRA_DIR:-<repo>/.infra}. Builds and downloads shared by every clone on
# the machine (Weaviate binary, Go caches, Kafka jars): ${TENANT_RAG_CACHE:-/var/cache/tenant-rag}.
# See /work/shared/ENGINES.md for why each setting is what it is.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

STRICT=0; STATUS_ONLY=0; SERVICES=()
for a in "$@"; do
  case "$a" in
    --strict) STRICT=1 ;;
    --status) STATUS_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    postgres|redis|kafka|weaviate) SERVICES+=("$a") ;;
    pg|postgresql) SERVICES+=(postgres) ;;
    *) err "unknown argument: $a"; usage >&2; exit 2 ;;
  esac
done
[ ${#SERVICES[@]} -eq 0 ] && SERVICES=("${ALL_SERVICES[@]}")

mkdir -p "$INFRA_DIR/logs" "$PID_DIR"
printf '%s\n' "$_TR_OFF" >"$INFRA_DIR/port-offset"

if [ "$STATUS_ONLY" -eq 1 ]; then
  for s in "${ALL_SERVICES[@]}"; do
    if "check_$s"; then printf '%-9s up    (pid %s)\n' "$s" "$(svc_pid "$s" || echo '?')"
    else printf '%-9s down\n' "$s"; fi
  done
  exit 0
fi

# One up.sh/down.sh at a time per clone.
exec 9>"$INFRA_DIR/.lock"
if ! flock -w 900 9; then die "another up.sh/down.sh holds $INFRA_DIR/.lock"; fi

# apt-get update at most once per run, even across the per-server subshells.
APT_UPDATED_FLAG="$INFRA_DIR/logs/.apt-updated.$$"
trap 'rm -f "$APT_UPDATED_FLAG"' EXIT
apt_install_once() {
  [ -f "$APT_UPDATED_FLAG" ] && _TR_APT_UPDATED=1
  apt_install "$@"; local rc=$?
  [ "$_TR_APT_UPDATED" -eq 1 ] && : >"$APT_UPDATED_FLAG"
  return "$rc"
}

# port_free_or_fail <svc> <port>: before a start, the port must not be taken by someone else.
port_free_or_fail() {
  if port_open "$2"; then
    err "$1: port $2 on 127.0.0.1 is already in use by another process ($(port_owner "$2")), not by one this script started; stop it or set TENANT_RAG_*_PORT"
    return 1
  fi
}

# =============================================================================================
# PostgreSQL (Debian postgresql-15). initdb/postgres refuse root: run them as user postgres.
# =============================================================================================
PG_DIR="$INFRA_DIR/postgres"; PG_DATA="$PG_DIR/data"; PG_RUN="$PG_DIR/run"; PG_LOG="$PG_DIR/postgres.log"
PG_PW_FILE="$PG_DIR/tenant_rag.password"

pg_as() {  # run a postgres binary as the cluster owner (postgres when we are root)
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_no_children() {  # no live (non-zombie) process has $1 as parent
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do pid_alive "$c" && return 1; done
  return 0
}

install_postgres() {
  [ -x "$(pg_bin postgres)" ] && [ -x "$(pg_bin initdb)" ] && return 0
  apt_install_once "postgresql-$PG_MAJOR" || return 1
  [ -x "$(pg_bin postgres)" ] || { err "postgres: $(pg_bin postgres) still missing after install"; return 1; }
}

pg_ensure_role() {
  if [ ! -s "$PG_PW_FILE" ]; then
    ( umask 077; od -An -tx1 -N18 /dev/urandom | tr -d ' \n' >"$PG_PW_FILE" )
  fi
  local pw; pw=$(cat "$PG_PW_FILE")
  # Password goes through stdin (\set), not argv. SUPERUSER for now (the app creates per-tenant
  # roles, which needs at least CREATEROLE).
  { printf '\\set pw %s\n' "$pw"; cat <<'SQL'
SELECT 'CREATE ROLE tenant_rag LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenant_rag') \gexec
ALTER ROLE tenant_rag WITH LOGIN SUPERUSER CREATEROLE CREATEDB PASSWORD :'pw';
SELECT 'CREATE DATABASE tenant_rag OWNER tenant_rag' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenant_rag') \gexec
SQL
  } | pg_as "$(pg_bin psql)" -X -q -h "$PG_RUN" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null \
    || { err "postgres: creating role/database tenant_rag failed"; return 1; }
  # Prove the URL we are about to publish works over TCP with the password.
  PGPASSWORD="$pw" "$(pg_bin psql)" -X -qAt -h 127.0.0.1 -p "$PG_PORT" -U tenant_rag -d tenant_rag -c 'select 1' >/dev/null \
    || { err "postgres: login as tenant_rag over TCP failed"; return 1; }
}

up_postgres() {
  install_postgres || return 1
  mkdir -p "$PG_DATA" "$PG_RUN"
  if is_root; then
    chown postgres:postgres "$PG_DIR" "$PG_DATA" "$PG_RUN"
    if ! runuser -u postgres -- test -w "$PG_DIR"; then
      err "postgres: user postgres cannot reach $PG_DIR (a parent directory is not traversable, e.g. a 0700 home); set INFRA_DIR elsewhere"
      return 1
    fi
  fi
  chmod 700 "$PG_DATA"

  # Already running? (postmaster.pid names the live postmaster)
  local pid=""
  [ -s "$PG_DATA/postmaster.pid" ] && pid=$(head -n1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')
  if pid_matches "$pid" postgres; then
    printf '%s\n' "$pid" >"$(pid_file postgres)"
    TR_WAIT_PID=$pid wait_until 30 postgres check_postgres || return 1
    log "postgres already running (pid $pid, port $PG_PORT)"
    pg_ensure_role; return
  fi
  if [ -e "$PG_DATA/postmaster.pid" ]; then
    # Left by a crash / kill -9. The recorded pid is dead, a zombie that the container's pid 1
    # has not reaped, or recycled by another program: in all three cases postgres itself would
    # refuse to start ("lock file already exists"). Let orphaned backends exit, then remove it.
    log "postgres: removing stale postmaster.pid (pid ${pid:-?} is not a live postmaster)"
    [ -n "$pid" ] && wait_until 15 "postgres: old backends of pid $pid" pg_no_children "$pid"
    rm -f "$PG_DATA/postmaster.pid"
  fi
  port_free_or_fail postgres "$PG_PORT" || return 1

  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    log "postgres: initdb $PG_DATA"
    local locale_opt=(--locale=C.UTF-8)
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' || locale_opt=(--no-locale)
    pg_as "$(pg_bin initdb)" -D "$PG_DATA" -E UTF8 "${locale_opt[@]}" \
      --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 \
      || { err "postgres: initdb failed (see $PG_DIR/initdb.log)"; tail -n 5 "$PG_DIR/initdb.log" >&2; return 1; }
  fi
  if is_root; then : >"$PG_LOG"; chown postgres:postgres "$PG_LOG"; fi
  log "postgres: starting on 127.0.0.1:$PG_PORT"
  local attempt
  for attempt in 1 2 3; do
    # Retried: after a crash, orphaned backends may hold the old shared memory for a moment.
    pg_as "$(pg_bin pg_ctl)" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_RUN -c max_connections=200" start >/dev/null 8>&- 9>&- \
      && break
    if [ "$attempt" -eq 3 ]; then err "postgres: pg_ctl start failed (see $PG_LOG)"; tail -n 5 "$PG_LOG" >&2; return 1; fi
    warn "postgres: pg_ctl start failed (attempt $attempt), retrying in 2 s"; sleep 2
  done
  pid=$(head -n1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')
  printf '%s\n' "$pid" >"$(pid_file postgres)"
  TR_WAIT_PID=$pid wait_until 30 postgres check_postgres || return 1
  pg_ensure_role
}

# =============================================================================================
# Redis (Debian redis-server 7.0), no persistence.
# =============================================================================================
up_redis() {
  have redis-server || apt_install_once redis-server || return 1
  local dir="$INFRA_DIR/redis" pid
  mkdir -p "$dir"
  if pid=$(svc_pid redis); then
    TR_WAIT_PID=$pid wait_until 15 redis check_redis || return 1
    log "redis already running (pid $pid, port $REDIS_PORT)"; return 0
  fi
  port_free_or_fail redis "$REDIS_PORT" || return 1
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  pid=$(start_bg redis "$dir/redis.log" "$(command -v redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 \
        --protected-mode yes --save '' --appendonly no --daemonize no --dir "$dir")
  TR_WAIT_PID=$pid wait_until 15 redis check_redis || { tail -n 5 "$dir/redis.log" >&2; return 1; }
}

# =============================================================================================
# Kafka 4.1.2, KRaft single node, from Maven Central jars.
# =============================================================================================
KAFKA_HOME_CACHE="$TENANT_RAG_CACHE/kafka/$KAFKA_VERSION"
KAFKA_DIR="$INFRA_DIR/kafka"

install_kafka() {
  [ -f "$KAFKA_HOME_CACHE/.ok" ] && return 0
  have java || apt_install_once openjdk-17-jre-headless || return 1
  have mvn || apt_install_once maven || return 1
  mkdir -p "$KAFKA_HOME_CACHE" "$TENANT_RAG_CACHE/logs"
  (
    flock -w 900 8 || { err "kafka: cache lock busy"; exit 1; }
    [ -f "$KAFKA_HOME_CACHE/.ok" ] && exit 0
    log "kafka: fetching $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME_CACHE/libs"
    # log4j-slf4j-impl (SLF4J 1.x binding), NOT log4j-slf4j2-impl: Kafka pulls slf4j-api 1.7.
    cat >"$KAFKA_HOME_CACHE/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tenant-rag</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$KAFKA_LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$KAFKA_LOG4J_VERSION</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version>
  </plugin></plugins></build>
</project>
EOF
    rm -rf "$KAFKA_HOME_CACHE/libs.tmp"
    if ! (cd "$KAFKA_HOME_CACHE" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$KAFKA_HOME_CACHE/libs.tmp" >"$TENANT_RAG_CACHE/logs/kafka-mvn.log" 2>&1); then
      err "kafka: mvn dependency:copy-dependencies failed (see $TENANT_RAG_CACHE/logs/kafka-mvn.log)"
      tail -n 10 "$TENANT_RAG_CACHE/logs/kafka-mvn.log" >&2; exit 1
    fi
    rm -rf "$KAFKA_HOME_CACHE/libs" && mv "$KAFKA_HOME_CACHE/libs.tmp" "$KAFKA_HOME_CACHE/libs" \
      && touch "$KAFKA_HOME_CACHE/.ok"
  ) 8>"$KAFKA_HOME_CACHE/.lock"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by infra/scripts/up.sh - single node, broker + controller (KRaft), 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
# Topics are created by the app with the admin client.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  cat >"$KAFKA_DIR/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Logger name="org.apache.kafka.storage" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
EOF
}

up_kafka() {
  local pid
  if pid=$(svc_pid kafka); then
    TR_WAIT_PID=$pid wait_until 60 kafka check_kafka || return 1
    log "kafka already running (pid $pid, port $KAFKA_PORT)"; return 0
  fi
  install_kafka || return 1
  port_free_or_fail kafka "$KAFKA_PORT" || return 1
  port_free_or_fail kafka-controller "$KAFKA_CONTROLLER_PORT" || return 1
  kafka_write_config
  local cp="$KAFKA_HOME_CACHE/libs/*"
  local jlog=(-Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.xml" -Dkafka.logs.dir="$KAFKA_DIR/logs")
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    # Keep one cluster id per data dir: re-formatting with a new id fails.
    [ -s "$KAFKA_DIR/cluster.id" ] || java "${jlog[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 | tr -d '\r\n ' >"$KAFKA_DIR/cluster.id"
    [ -s "$KAFKA_DIR/cluster.id" ] || { err "kafka: StorageTool random-uuid failed"; return 1; }
    log "kafka: formatting storage (cluster id $(cat "$KAFKA_DIR/cluster.id"))"
    java "${jlog[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$(cat "$KAFKA_DIR/cluster.id")" \
      -c "$KAFKA_DIR/server.properties" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1 \
      || { err "kafka: storage format failed (see $KAFKA_DIR/format.log)"; tail -n 5 "$KAFKA_DIR/format.log" >&2; return 1; }
  fi
  log "kafka: starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
  pid=$(start_bg kafka "$KAFKA_DIR/kafka.log" java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true "${jlog[@]}" -cp "$cp" kafka.Kafka "$KAFKA_DIR/server.properties")
  TR_WAIT_PID=$pid wait_until 60 kafka check_kafka || { tail -n 10 "$KAFKA_DIR/kafka.log" >&2; return 1; }
}

# =============================================================================================
# Weaviate v1.39.3 built with `go install` (cold ~7 min: the binary is cached per machine).
# =============================================================================================
WEAVIATE_BIN="${WEAVIATE_BIN:-$TENANT_RAG_CACHE/weaviate/$WEAVIATE_VERSION/weaviate-server}"
WEAVIATE_DIR="$INFRA_DIR/weaviate"

install_weaviate() {
  local bdir; bdir=$(dirname "$WEAVIATE_BIN")
  [ -x "$WEAVIATE_BIN" ] && { [ -f "$bdir/.ok" ] || [ "$bdir" != "$TENANT_RAG_CACHE/weaviate/$WEAVIATE_VERSION" ]; } && return 0
  have go || { err "weaviate: Go (>= 1.26) is needed to build weaviate-server $WEAVIATE_VERSION; none on PATH"; return 1; }
  local gov; gov=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  case "$gov" in 1.2[6-9]*|1.[3-9][0-9]*|[2-9].*) ;; *) err "weaviate: Go $gov is too old, need >= 1.26"; return 1 ;; esac
  mkdir -p "$bdir" "$TENANT_RAG_CACHE/go/mod" "$TENANT_RAG_CACHE/go/build" "$TENANT_RAG_CACHE/logs"
  (
    flock -w 1800 8 || { err "weaviate: build lock busy"; exit 1; }
    [ -x "$WEAVIATE_BIN" ] && [ -f "$bdir/.ok" ] && exit 0
    local blog="$TENANT_RAG_CACHE/logs/weaviate-build.log" t0; t0=$(now_ms)
    log "weaviate: go install weaviate-server@$WEAVIATE_VERSION into $bdir (cold build about 7 min; log $blog)"
    if ! (cd / && GOBIN="$bdir" GOMODCACHE="$TENANT_RAG_CACHE/go/mod" GOCACHE="$TENANT_RAG_CACHE/go/build" \
            go install -ldflags="-s -w" "github.com/weaviate/weaviate/cmd/weaviate-server@$WEAVIATE_VERSION" >"$blog" 2>&1); then
      err "weaviate: go install failed (see $blog)"; tail -n 10 "$blog" >&2; exit 1
    fi
    touch "$bdir/.ok"
    log "weaviate: built in $(elapsed_since "$t0")"
  ) 8>"$TENANT_RAG_CACHE/weaviate/.build.lock"
}

up_weaviate() {
  local pid
  if pid=$(svc_pid weaviate); then
    TR_WAIT_PID=$pid wait_until 60 weaviate check_weaviate || return 1
    log "weaviate already running (pid $pid, port $WEAVIATE_PORT)"; return 0
  fi
  install_weaviate || return 1
  local p
  for p in "$WEAVIATE_PORT" "$WEAVIATE_GRPC_PORT" "$WEAVIATE_GOSSIP_PORT" "$WEAVIATE_DATA_PORT" "$WEAVIATE_RAFT_PORT" "$WEAVIATE_RAFT_RPC_PORT"; do
    port_free_or_fail weaviate "$p" || return 1
  done
  mkdir -p "$WEAVIATE_DIR/data"
  log "weaviate: starting on 127.0.0.1:$WEAVIATE_PORT (gRPC $WEAVIATE_GRPC_PORT)"
  # A clean environment: nothing inherited (API keys, OIDC settings...) changes its behaviour.
  # DISABLE_TELEMETRY: else it probes cloud metadata addresses and phones home.
  # GO_PROFILING_DISABLE: else pprof listens on :6060 on every interface.
  pid=$(start_bg weaviate "$WEAVIATE_DIR/weaviate.log" env -i PATH="$PATH" HOME="${HOME:-/root}" \
    DISABLE_TELEMETRY=true GO_PROFILING_DISABLE=true PROMETHEUS_MONITORING_ENABLED=false \
    AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true AUTHENTICATION_APIKEY_ENABLED=false \
    PERSISTENCE_DATA_PATH="$WEAVIATE_DIR/data" QUERY_DEFAULTS_LIMIT=25 \
    DEFAULT_VECTORIZER_MODULE=none ENABLE_MODULES='' \
    CLUSTER_HOSTNAME=node1 CLUSTER_BIND_ADDR=127.0.0.1 CLUSTER_ADVERTISE_ADDR=127.0.0.1 CLUSTER_IN_LOCALHOST=true \
    CLUSTER_GOSSIP_BIND_PORT="$WEAVIATE_GOSSIP_PORT" CLUSTER_DATA_BIND_PORT="$WEAVIATE_DATA_PORT" \
    RAFT_PORT="$WEAVIATE_RAFT_PORT" RAFT_INTERNAL_RPC_PORT="$WEAVIATE_RAFT_RPC_PORT" \
    RAFT_JOIN="node1:$WEAVIATE_RAFT_RPC_PORT" RAFT_BOOTSTRAP_EXPECT=1 RAFT_TIMEOUTS_MULTIPLIER=1 \
    GRPC_PORT="$WEAVIATE_GRPC_PORT" LOG_LEVEL=info LOG_FORMAT=text \
    GOMEMLIMIT="${TENANT_RAG_WEAVIATE_GOMEMLIMIT:-1536MiB}" \
    "$WEAVIATE_BIN" --host 127.0.0.1 --port "$WEAVIATE_PORT" --scheme http)
  # `env` execs the server, so the pid is weaviate-server's.
  TR_WAIT_PID=$pid wait_until 60 weaviate check_weaviate || { tail -n 10 "$WEAVIATE_DIR/weaviate.log" >&2; return 1; }
  wait_until 10 weaviate-grpc port_open "$WEAVIATE_GRPC_PORT" || return 1
}

# =============================================================================================
T_ALL=$(now_ms)
declare -A RESULT TIME
FAILED=0
for s in "${SERVICES[@]}"; do
  t0=$(now_ms)
  ( "up_$s" ); rc=$?
  TIME[$s]=$(elapsed_since "$t0")
  if [ $rc -eq 0 ]; then RESULT[$s]=up; log "$s: up (${TIME[$s]})"
  else RESULT[$s]=FAILED; FAILED=$((FAILED + 1)); err "$s: did not come up (${TIME[$s]}); continuing with the others"; fi
done

write_env_file

log "summary (total $(elapsed_since "$T_ALL")):"
for s in "${SERVICES[@]}"; do printf '  %-9s %-6s %s\n' "$s" "${RESULT[$s]}" "${TIME[$s]}" >&2; done
if [ "$FAILED" -gt 0 ]; then
  if [ "$STRICT" -eq 1 ]; then err "$FAILED server(s) failed (--strict)"; exit 1; fi
  warn "$FAILED server(s) failed; continuing (pass --strict to fail)"
fi
exit 0
