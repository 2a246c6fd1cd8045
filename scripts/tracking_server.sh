#!/usr/bin/env bash
# A PostgreSQL-backed MLflow tracking server without Docker: for workstations and HPC login nodes.
#
# Usage:
#   scripts/tracking_server.sh start    # first time: initdb a private cluster; then start PostgreSQL
#                                       # on 127.0.0.1:$PG_PORT and `mlflow server` on $MLFLOW_HOST:$MLFLOW_PORT
#   scripts/tracking_server.sh status   # exit 0 when PostgreSQL and MLflow both answer, 3 otherwise
#   scripts/tracking_server.sh stop     # stop MLflow, then PostgreSQL; the data stay in the state directory
#   then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000   (or: pinnrun tracking.uri=http://127.0.0.1:5000)
#
# Settings (environment variables):
#   PINNRUN_SERVER_DIR  state directory, kept across restarts (default ./tracking-server):
#                       pgdata/ (the cluster), artifacts/ (served by MLflow), logs/, pgpass, mlflow.pid
#   PG_PORT             PostgreSQL port on 127.0.0.1 (default 5433)
#   MLFLOW_HOST         interface `mlflow server` binds (default 127.0.0.1; see the README's SLURM section
#                       before binding another: MLflow has no authentication by default)
#   MLFLOW_PORT         (default 5000)
#   MLFLOW_WORKERS      server worker processes (default 2)
#   MLFLOW_SERVER_ALLOWED_HOSTS  Host headers MLflow accepts (MLflow's own variable; default localhost
#                       and private IPs; a list replaces them), e.g. "login01:5000,localhost:*,127.0.0.1:*"
#   PG_BIN              directory holding initdb and pg_ctl (default: from PATH, else the newest
#                       /usr/lib/postgresql/*/bin)
#   PG_RUN_AS           when run as root, the user PostgreSQL runs as (default postgres): PostgreSQL refuses
#                       to run as root. The state directory is then owned by that user.
#   START_TIMEOUT_S     how long `start` waits for MLflow to answer (default 120)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  MLflow's own variable; default here false (its job runner serves
#                       GenAI features, not experiment tracking)
#
# Needs: PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql), and `mlflow` with
# psycopg2 on PATH (pip install 'pinnrun[server]'). The cluster's only role, `mlflow`, has a random
# password kept in $PINNRUN_SERVER_DIR/pgpass (mode 600), which libpq reads: no password on a command line.
set -euo pipefail

DIR=$(realpath -m "${PINNRUN_SERVER_DIR:-./tracking-server}")
PG_PORT=${PG_PORT:-5433}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
START_TIMEOUT_S=${START_TIMEOUT_S:-120}
PGDATA_DIR=$DIR/pgdata
PID_FILE=$DIR/mlflow.pid
DB=mlflow
export PGPASSFILE=$DIR/pgpass
# MLflow 3's job runner (GenAI scoring and trace archival; eight more processes) is not used by pinnrun.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

die() { echo "tracking_server: $*" >&2; exit 1; }

find_pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then
        echo "$PG_BIN"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(realpath "$(command -v pg_ctl)")"
    else
        local newest
        newest=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
        [[ -n $newest ]] || die "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)"
        echo "$newest"
    fi
}
PG_BIN=$(find_pg_bin)
for tool in initdb pg_ctl psql createdb; do
    [[ -x $PG_BIN/$tool ]] || die "no $tool in $PG_BIN"
done

# Run a PostgreSQL server command as the cluster's owner (PG_RUN_AS when this script runs as root).
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd "$DIR" && runuser -u "${PG_RUN_AS:-postgres}" -- "$@")
    else
        "$@"
    fi
}

mlflow_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    group_running "$pid" && echo "$pid"
}

# Whether process group $1 has a member that is not a zombie (exited, waiting to be reaped).
group_running() {
    ps -e -o pgid=,stat= | awk -v group="$1" '$1 == group && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

mlflow_healthy() {
    local host=$MLFLOW_HOST
    [[ $host != 0.0.0.0 ]] || host=127.0.0.1
    python3 - "http://$host:$MLFLOW_PORT/health" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
except OSError:
    sys.exit(1)
EOF
}

init_cluster() {
    mkdir -p "$DIR"
    if [[ $EUID -eq 0 ]]; then
        chown "${PG_RUN_AS:-postgres}": "$DIR"
        as_owner test -w "$DIR" || die "${PG_RUN_AS:-postgres} cannot write $DIR: choose a directory whose parents it can traverse"
    fi
    local password pwfile
    password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
    pwfile=$(mktemp "$DIR/.pwfile.XXXXXX")
    printf '%s\n' "$password" >"$pwfile"
    [[ $EUID -ne 0 ]] || chown "${PG_RUN_AS:-postgres}": "$pwfile"
    as_owner "$PG_BIN/initdb" --pgdata="$PGDATA_DIR" --username="$DB" --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions \
        >"$DIR/initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed, see $DIR/initdb.log"; }
    rm -f "$pwfile"
    (umask 077 && printf '127.0.0.1:*:*:%s:%s\n' "$DB" "$password" >"$PGPASSFILE")
}

start_postgres() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] || init_cluster
    mkdir -p "$DIR/logs" "$DIR/artifacts"
    [[ $EUID -ne 0 ]] || chown "${PG_RUN_AS:-postgres}": "$DIR/logs"
    if as_owner "$PG_BIN/pg_ctl" status --pgdata="$PGDATA_DIR" >/dev/null 2>&1; then
        echo "PostgreSQL already running ($PGDATA_DIR)"
    else
        as_owner "$PG_BIN/pg_ctl" start --pgdata="$PGDATA_DIR" --log="$DIR/logs/postgres.log" --wait --timeout=60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=''" >/dev/null \
            || die "PostgreSQL did not start, see $DIR/logs/postgres.log"
    fi
    local exists
    exists=$("$PG_BIN/psql" --host=127.0.0.1 --port="$PG_PORT" --username="$DB" --dbname=postgres --no-psqlrc \
        --tuples-only --no-align --command="SELECT 1 FROM pg_database WHERE datname = '$DB'")
    [[ $exists == 1 ]] || "$PG_BIN/createdb" --host=127.0.0.1 --port="$PG_PORT" --username="$DB" "$DB"
}

start_mlflow() {
    if pid=$(mlflow_pid); then
        echo "MLflow already running (pid $pid)"
        return
    fi
    command -v mlflow >/dev/null || die "mlflow not on PATH (pip install 'pinnrun[server]')"
    # setsid: the server and its workers form one process group, which `stop` signals as a whole.
    # uvicorn kills a worker that does not answer its supervisor within 5 s, which a worker still
    # importing MLflow on a busy login node fails to do, over and over: allow it a minute.
    setsid mlflow server \
        --backend-store-uri "postgresql+psycopg2://$DB@127.0.0.1:$PG_PORT/$DB" \
        --serve-artifacts --artifacts-destination "$DIR/artifacts" \
        --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
        --uvicorn-opts "--timeout-worker-healthcheck 60" \
        >"$DIR/logs/mlflow.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until mlflow_healthy; do
        mlflow_pid >/dev/null || { tail -n 20 "$DIR/logs/mlflow.log" >&2; die "mlflow server exited, see $DIR/logs/mlflow.log"; }
        ((SECONDS < deadline)) || die "mlflow server did not answer within ${START_TIMEOUT_S}s, see $DIR/logs/mlflow.log"
        sleep 1
    done
    echo "MLflow tracking server: http://$MLFLOW_HOST:$MLFLOW_PORT (PostgreSQL on 127.0.0.1:$PG_PORT, artifacts in $DIR/artifacts)"
}

stop_mlflow() {
    local pid
    if pid=$(mlflow_pid); then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 30); do
            group_running "$pid" || break
            sleep 1
        done
        if group_running "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            sleep 1
        fi
        echo "MLflow stopped"
    fi
    rm -f "$PID_FILE"
}

stop_postgres() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] || return 0
    if as_owner "$PG_BIN/pg_ctl" status --pgdata="$PGDATA_DIR" >/dev/null 2>&1; then
        as_owner "$PG_BIN/pg_ctl" stop --pgdata="$PGDATA_DIR" --mode=fast --wait >/dev/null
        echo "PostgreSQL stopped"
    fi
}

status() {
    local code=0
    if [[ -f $PGDATA_DIR/PG_VERSION ]] && as_owner "$PG_BIN/pg_ctl" status --pgdata="$PGDATA_DIR" >/dev/null 2>&1; then
        echo "PostgreSQL: running on 127.0.0.1:$PG_PORT ($PGDATA_DIR)"
    else
        echo "PostgreSQL: stopped"
        code=3
    fi
    if mlflow_pid >/dev/null && mlflow_healthy; then
        echo "MLflow: running, http://$MLFLOW_HOST:$MLFLOW_PORT"
    else
        echo "MLflow: not answering"
        code=3
    fi
    return "$code"
}

case ${1:-} in
    start) start_postgres && start_mlflow ;;
    stop) stop_mlflow && stop_postgres ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (settings: see the header of this script)" >&2; exit 2 ;;
esac
