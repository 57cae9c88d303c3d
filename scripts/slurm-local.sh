#!/usr/bin/env bash
# A real single-node Slurm cluster in a temporary folder, for the tests and for trying `recur study` locally.
#
#   scripts/slurm-local.sh start    # installs Debian's slurm-wlm + munge when missing (root, apt), starts
#                                   # munged, slurmctld and slurmd; prints `export SLURM_CONF=...`
#   scripts/slurm-local.sh status   # daemons alive? + sinfo
#   scripts/slurm-local.sh stop     # stops the three daemons by the pids they wrote (never by name)
#
# The node gets this machine's CPUs and memory (`slurmd -C`). Accounting is off
# (AccountingStorageType=accounting_storage/none), so `sacct` does not work: recur reads job states from
# squeue/scontrol and the study journal instead. Folder: $RECUR_SLURM_DIR (default /tmp/recur-slurm).
# cred_expire=30 (default 120): a requeued job (time-out warning, pre-emption) may start again after 30 s.
# KillWait=10 and OverTimeLimit=0 (default): a job past its time limit ends within about 10 s + Slurm's 30 s
# time-limit check.
set -euo pipefail

DIR=${RECUR_SLURM_DIR:-/tmp/recur-slurm}
CONF=$DIR/slurm.conf
PORT_CTLD=${RECUR_SLURM_PORT:-16817}
PORT_D=$((PORT_CTLD + 1))

die() { echo "slurm-local: $*" >&2; exit 3; }

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null \
        || die "Slurm (slurmctld, slurmd, munged) is not installed and this machine has no apt-get; install slurm-wlm and munge"
    [ "$(id -u)" = 0 ] || die "Slurm is not installed; installing it needs root (apt-get install slurm-wlm munge)"
    echo "slurm-local: installing slurm-wlm and munge (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

status() {
    local ok=0
    for d in munged slurmctld slurmd; do
        if pid_alive "$DIR/run/$d.pid"; then echo "$d: running (pid $(cat "$DIR/run/$d.pid"))"
        else echo "$d: stopped"; ok=1; fi
    done
    if [ $ok = 0 ]; then SLURM_CONF=$CONF sinfo; fi
    return $ok
}

start() {
    install_if_missing
    if pid_alive "$DIR/run/slurmctld.pid"; then
        echo "slurm-local: already running in $DIR" >&2
        echo "export SLURM_CONF=$CONF"
        return
    fi
    mkdir -p "$DIR"/{run,log,state,spool,munge}
    chmod 700 "$DIR/munge"
    [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; }
    chmod 600 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
    local node user
    node=$(slurmd -C | head -n1)    # NodeName=<host> CPUs=.. RealMemory=.. (this machine)
    user=$(id -un)
    cat > "$CONF" <<CONFEOF
ClusterName=recurlocal
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=$user
SlurmdUser=root
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_D
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=10
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONFEOF
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 1 60); do
        if SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm-local: cluster up in $DIR ($node)" >&2
            echo "export SLURM_CONF=$CONF"
            return
        fi
        sleep 0.5
    done
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "the node did not become idle within 30 s (logs above)"
}

stop() {
    # cancel this cluster's jobs first: slurmstepd (and the job) would outlive slurmd
    if pid_alive "$DIR/run/slurmctld.pid"; then
        local ids; ids=$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [ -n "${ids// /}" ]; then
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF scancel $ids 2>/dev/null || true
            for _ in $(seq 1 60); do
                [ -z "$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.5
            done
        fi
    fi
    for d in slurmd slurmctld munged; do
        local f=$DIR/run/$d.pid
        if pid_alive "$f"; then
            local pid; pid=$(cat "$f")
            kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$f"
    done
    echo "slurm-local: stopped" >&2
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
