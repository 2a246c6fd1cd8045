#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for trying `hydra/launcher=submitit_slurm` sweeps (and their
# preemption and requeue) on one machine; tests/test_slurm.py starts one per test module.
#
# Usage (as root: slurmd starts each job as its user):
#   scripts/slurm_cluster.sh start    # munge key, slurm.conf for this host (its CPUs and memory),
#                                     # then munged, slurmctld and slurmd; waits for the node to be idle
#   scripts/slurm_cluster.sh status   # exit 0 when the controller answers and the node is up, 3 otherwise
#   scripts/slurm_cluster.sh stop     # cancel every job, wait for them to end, stop the daemons
#   then: export SLURM_CONF=$SLURM_CLUSTER_DIR/slurm.conf   (sbatch, squeue, scontrol and pinnrun find it)
#
# Settings (environment variables):
#   SLURM_CLUSTER_DIR   state directory (default ./slurm-cluster): slurm.conf, munge/ (key, socket),
#                       state/ (StateSaveLocation), spool/ (SlurmdSpoolDir), logs/, pid files
#   SLURMCTLD_PORT      controller port on 127.0.0.1 (default 16817, not SLURM's 6817: no clash with a real one)
#   SLURMD_PORT         node daemon port (default 16818)
#   START_TIMEOUT_S     how long `start` waits for the node to come up (default 60)
#
# Needs: slurmctld, slurmd and the client commands, and munge (Debian/Ubuntu: apt-get install slurm-wlm munge).
# The cluster has no accounting database (no slurmdbd), so `sacct` reports "accounting storage is
# disabled": submitit then logs "Bypassing sacct error" and waits for each job's result file.
set -euo pipefail

DIR=$(realpath -m "${SLURM_CLUSTER_DIR:-./slurm-cluster}")
SLURMCTLD_PORT=${SLURMCTLD_PORT:-16817}
SLURMD_PORT=${SLURMD_PORT:-16818}
START_TIMEOUT_S=${START_TIMEOUT_S:-60}
export SLURM_CONF=$DIR/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
NODE=$(hostname -s)

die() { echo "slurm_cluster: $*" >&2; exit 1; }

for tool in munged slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install slurm-wlm munge)"
done

# Whether process $1 is running (not a zombie waiting to be reaped).
pid_running() {
    ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'
}

# Whether the process in pid file $1 is running.
running() {
    [[ -f $1 ]] && pid_running "$(<"$1")"
}

# slurm.conf for this host: the node line is what `slurmd -C` measures (CPUs, sockets, cores,
# threads, memory), reached on loopback. SlurmUser root and no cgroups: a test cluster, not a site.
write_config() {
    local node_line
    node_line=$(slurmd -C | head -n 1)
    [[ $node_line == NodeName=* ]] || die "slurmd -C did not describe this node: $node_line"
    cat >"$SLURM_CONF" <<EOF
ClusterName=pinnrun-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/logs/slurmctld.log
SlurmdLogFile=$DIR/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=10
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if running "$DIR/munge/munged.pid"; then
        echo "munged already running"
        return
    fi
    # munged refuses a socket directory that others cannot traverse, and a key others can read.
    install -d -m 755 "$DIR" "$DIR/munge"
    if [[ ! -f $DIR/munge/munge.key ]]; then
        (umask 077 && head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
        chmod 400 "$DIR/munge/munge.key"
    fi
    munged --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$DIR/munge/munged.pid" \
        --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/logs/munged.log" \
        || die "munged did not start, see $DIR/logs/munged.log"
}

node_up() {
    sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

start() {
    mkdir -p "$DIR/logs" "$DIR/state" "$DIR/spool"
    [[ -f $SLURM_CONF ]] || write_config
    start_munge
    running "$DIR/slurmctld.pid" || slurmctld || die "slurmctld did not start, see $DIR/logs/slurmctld.log"
    running "$DIR/slurmd.pid" || slurmd || die "slurmd did not start, see $DIR/logs/slurmd.log"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until node_up; do
        ((SECONDS < deadline)) || die "node $NODE not up within ${START_TIMEOUT_S}s, see $DIR/logs/"
        sleep 1
    done
    echo "SLURM cluster up: node $NODE, controller 127.0.0.1:$SLURMCTLD_PORT"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# Stop a daemon by its pid file: SIGTERM, then SIGKILL after 30 s. The process is watched, not the
# file: slurmd removes its pid file as soon as it begins to shut down.
stop_daemon() {
    local pid_file=$1 pid
    running "$pid_file" || { rm -f "$pid_file"; return 0; }
    pid=$(<"$pid_file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        pid_running "$pid" || break
        sleep 1
    done
    if pid_running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

stop() {
    if running "$DIR/slurmctld.pid"; then
        scancel --full --quiet --user="$(id -un)" || true
        for _ in $(seq 60); do
            [[ -z $(squeue --noheader --user="$(id -un)" 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    stop_daemon "$DIR/slurmd.pid"
    stop_daemon "$DIR/slurmctld.pid"
    stop_daemon "$DIR/munge/munged.pid"
    echo "SLURM cluster stopped"
}

status() {
    if running "$DIR/slurmctld.pid" && node_up; then
        sinfo
    else
        echo "SLURM cluster: not up ($DIR)"
        return 3
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (settings: see the header of this script)" >&2; exit 2 ;;
esac
