#!/usr/bin/env bash
# Stop the servers started by infra/scripts/up.sh, by PID: a graceful signal, then SIGKILL after a
# timeout. Only processes recorded in ${INFRA_DIR:-<repo>/.infra}/pids (and postgres' own
# postmaster.pid) are touched.
#
#   bash infra/scripts/down.sh [--purge] [postgres] [redis] [kafka] [weaviate]
#
# No names = all. --purge also deletes their data under INFRA_DIR (not the machine-wide cache).
# .env.infra is rewritten to list only the servers still answering.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PURGE=0; SERVICES=()
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    postgres|redis|kafka|weaviate) SERVICES+=("$a") ;;
    pg|postgresql) SERVICES+=(postgres) ;;
    *) err "unknown argument: $a"; exit 2 ;;
  esac
done
[ ${#SERVICES[@]} -eq 0 ] && SERVICES=(weaviate kafka redis postgres)   # reverse start order

[ -d "$INFRA_DIR" ] || { log "nothing to stop ($INFRA_DIR does not exist)"; exit 0; }
mkdir -p "$PID_DIR"
exec 9>"$INFRA_DIR/.lock"
flock -w 120 9 || warn "lock $INFRA_DIR/.lock busy; stopping anyway"

T0=$(now_ms)
for s in "${SERVICES[@]}"; do
  pid=""
  case "$s" in
    postgres)
      # The postmaster's own pid file is authoritative; ours is a copy.
      pf="$INFRA_DIR/postgres/data/postmaster.pid"
      [ -s "$pf" ] && pid=$(head -n1 "$pf" | tr -dc '0-9')
      pid_matches "$pid" postgres || pid=$(svc_pid postgres || true)
      # SIGINT = "fast" shutdown (rolls back open transactions, checkpoints, exits).
      [ -n "$pid" ] && stop_pid postgres "$pid" INT 30 ;;
    redis)    pid=$(svc_pid redis || true);    [ -n "$pid" ] && stop_pid redis "$pid" TERM 10 ;;
    kafka)    pid=$(svc_pid kafka || true);    [ -n "$pid" ] && stop_pid kafka "$pid" TERM 30 ;;
    weaviate) pid=$(svc_pid weaviate || true); [ -n "$pid" ] && stop_pid weaviate "$pid" TERM 30 ;;
  esac
  [ -z "$pid" ] && log "$s: not running (no live pid recorded)"
  rm -f "$(pid_file "$s")"
  if [ "$PURGE" -eq 1 ]; then
    log "$s: deleting data in $INFRA_DIR/$s"
    rm -rf "${INFRA_DIR:?}/$s"
  fi
done

write_env_file
log "down in $(elapsed_since "$T0")"
