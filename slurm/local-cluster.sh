#!/usr/bin/env bash
# A real single-machine SLURM cluster for tests and demos (Debian 12 / Slurm 22.05).
#
#   slurm/local-cluster.sh up       install (Debian packages, if missing) and start it
#   slurm/local-cluster.sh down     cancel all jobs, stop the daemons we started (by recorded PID)
#   slurm/local-cluster.sh env      print export lines:  eval "$(slurm/local-cluster.sh env)"
#   slurm/local-cluster.sh status   one line per daemon
#
# Everything lives under a scratch folder; nothing is written to /etc except
# "127.0.0.1 node1 ..." in /etc/hosts (emulated node names must resolve).
# It refuses to run on a machine that already has a real SLURM configuration.
#
# Settings (environment):
#   ECONAS_SLURM_BASE        scratch folder                       (/tmp/econas-slurm)
#   ECONAS_SLURM_NODES       emulated nodes node1..nodeN           (1)
#   ECONAS_SLURM_CPUS        CPUs declared per node                (8; may exceed nproc)
#   ECONAS_SLURM_GPUS        fake GPUs (gres) per node, 0 = none   (4)
#   ECONAS_SLURM_ACCOUNTING  slurmdbd (MariaDB, real sacct) | none (sacct shim)   (slurmdbd)
#   ECONAS_SLURM_CRED_EXPIRE seconds; also the requeue delay       (10)
#   ECONAS_SLURM_GRACE       GraceTime of the preemptible partitions, seconds (20)
#   ECONAS_SLURM_TIMEOUT     seconds to wait for the cluster to come up (60)
# See slurm/README.md and docs on why each setting is what it is.
set -euo pipefail

BASE=${ECONAS_SLURM_BASE:-/tmp/econas-slurm}
NODES=${ECONAS_SLURM_NODES:-1}
CPUS=${ECONAS_SLURM_CPUS:-8}
GPUS=${ECONAS_SLURM_GPUS:-4}
ACCOUNTING=${ECONAS_SLURM_ACCOUNTING:-slurmdbd}
CRED_EXPIRE=${ECONAS_SLURM_CRED_EXPIRE:-10}
GRACE=${ECONAS_SLURM_GRACE:-20}
UP_TIMEOUT=${ECONAS_SLURM_TIMEOUT:-60}
CLUSTER=localci
MARKER=.econas-local-slurm
CONF=$BASE/etc/slurm.conf
RUN=$BASE/run
LOG=$BASE/log
PACKAGES=(slurmctld slurmd slurm-client munge)
DB_PACKAGES=(slurmdbd mariadb-server)

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
read_pid() { if [[ -s $1 ]]; then tr -dc '0-9' <"$1"; fi; }

# PIDs of the daemons this script started, as "name pidfile" pairs (stop order).
recorded_pidfiles() {
    local f
    for f in "$RUN"/slurmd-*.pid; do [[ -e $f ]] && echo "$f"; done
    for f in slurmctld slurmdbd mariadbd munged; do
        [[ -e $RUN/$f.pid ]] && echo "$RUN/$f.pid"
    done
    return 0
}

check_args() {
    [[ $NODES =~ ^[1-9]$ ]] || die "ECONAS_SLURM_NODES must be 1-9, got '$NODES'"
    [[ $CPUS =~ ^[0-9]+$ && $CPUS -ge 1 ]] || die "ECONAS_SLURM_CPUS must be >= 1, got '$CPUS'"
    [[ $GPUS =~ ^[0-9]+$ ]] || die "ECONAS_SLURM_GPUS must be >= 0, got '$GPUS'"
    [[ $ACCOUNTING == slurmdbd || $ACCOUNTING == none ]] ||
        die "ECONAS_SLURM_ACCOUNTING must be 'slurmdbd' or 'none', got '$ACCOUNTING'"
}

# Exit 2 if this machine has a SLURM that is not ours.
refuse_real_slurm() {
    if [[ -e /etc/slurm/slurm.conf || -e /etc/slurm-llnl/slurm.conf ]]; then
        echo "local-cluster: refusing: this machine has a real SLURM configuration (/etc/slurm/slurm.conf)" >&2
        exit 2
    fi
    local d p ours
    for d in slurmctld slurmd slurmdbd; do
        for p in $(pgrep -x "$d" || true); do
            ours=0
            for f in $(recorded_pidfiles); do [[ $(read_pid "$f") == "$p" ]] && ours=1; done
            if [[ $ours == 0 ]]; then
                echo "local-cluster: refusing: a $d (pid $p) that this script did not start is running" >&2
                exit 2
            fi
        done
    done
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
    local want=("${PACKAGES[@]}") missing=() p
    [[ $ACCOUNTING == slurmdbd ]] && want+=("${DB_PACKAGES[@]}")
    for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) == 0 ]] || die "packages missing (${missing[*]}); run as root to install them"
    say "installing ${missing[*]} ..."
    local t0=$SECONDS made_policy=0
    # Keep the postinsts from starting system services (no systemd here anyway).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
    local ok=0
    if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null &&
        "${apt[@]}" "${missing[@]}" >"$BASE.apt.log" 2>&1; then
        ok=1
    else
        say "install failed or package lists missing; running apt-get update"
        apt-get update -q >>"$BASE.apt.log" 2>&1 || true
        "${apt[@]}" "${missing[@]}" >>"$BASE.apt.log" 2>&1 && ok=1
    fi
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $ok != 1 ]]; then
        tail -n 20 "$BASE.apt.log" >&2
        die "apt-get install ${missing[*]} failed (log: $BASE.apt.log)"
    fi
    say "installed in $((SECONDS - t0)) s"
}

hostname_short() { hostname -s 2>/dev/null || hostname; }

node_list() {
    if [[ $NODES == 1 ]]; then echo node1; else echo "node[1-$NODES]"; fi
}
port_list() {
    if [[ $NODES == 1 ]]; then echo 17001; else echo "[17001-$((17000 + NODES))]"; fi
}

ensure_hosts() {
    local n missing=()
    for n in $(seq 1 "$NODES"); do
        getent hosts "node$n" >/dev/null || missing+=("node$n")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    # Append (not sed -i): /etc/hosts is often a bind mount.
    echo "127.0.0.1 ${missing[*]}  # econas-hpc local SLURM cluster" >>/etc/hosts
}

# Fresh scratch folder; only ever wipes a folder that this script created.
prepare_base() {
    if [[ -e $BASE ]]; then
        if [[ -e $BASE/$MARKER ]]; then
            # Keep only the pristine MariaDB datadir (mariadb-install-db takes 0.6-7 s).
            find "$BASE" -mindepth 1 -maxdepth 1 ! -name mysql-template -exec rm -rf {} +
        elif [[ -n $(ls -A "$BASE") ]]; then
            die "$BASE exists, is not empty and was not made by this script; set ECONAS_SLURM_BASE"
        fi
    fi
    mkdir -p "$BASE"/{etc,state,run,log,dev,bin}
    touch "$BASE/$MARKER"
    local n
    for n in $(seq 1 "$NODES"); do mkdir -p "$BASE/spool/node$n"; done
}

# Fake GPUs: character devices with /dev/null's numbers. Slurm only stats them.
make_fake_gpus() {
    local i
    for ((i = 0; i < GPUS; i++)); do
        mknod -m 666 "$BASE/dev/gpu$i" c 1 3 2>/dev/null || cp -a /dev/null "$BASE/dev/gpu$i" ||
            die "cannot create fake GPU device file $BASE/dev/gpu$i (set ECONAS_SLURM_GPUS=0)"
    done
}

write_configs() {
    local host mem_mb gres_node="" gres_types="" acct
    host=$(hostname_short)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    if [[ $GPUS -gt 0 ]]; then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:$GPUS"
        {
            echo "AutoDetect=off"
            echo "NodeName=$(node_list) Name=gpu File=$BASE/dev/gpu[0-$((GPUS - 1))]"
        } >"$BASE/etc/gres.conf"
    fi
    if [[ $ACCOUNTING == slurmdbd ]]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
        # Record GPU allocations, so sacct can tell GPU-seconds.
        if [[ $GPUS -gt 0 ]]; then acct+=$'\nAccountingStorageTRES=gres/gpu'; fi
    else
        acct="AccountingStorageType=accounting_storage/none"
    fi
    cat >"$CONF" <<EOF
# Generated by slurm/local-cluster.sh; rewritten on every "up".
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=cred_expire=$CRED_EXPIRE
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
SlurmctldParameters=preempt_send_user_signal
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=5
InactiveLimit=0
MessageTimeout=10
SlurmdTimeout=60
SlurmctldTimeout=60
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
$gres_types
NodeName=$(node_list) NodeHostname=$host NodeAddr=127.0.0.1 Port=$(port_list) CPUs=$CPUS RealMemory=$mem_mb $gres_node State=UNKNOWN
PartitionName=gpu   Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1  PreemptMode=REQUEUE GraceTime=$GRACE
PartitionName=debug Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=1  PreemptMode=REQUEUE GraceTime=$GRACE
PartitionName=high  Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
    if [[ $ACCOUNTING == slurmdbd ]]; then
        cat >"$BASE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
EOF
        chmod 600 "$BASE/etc/slurmdbd.conf"
    else
        write_sacct_shim
    fi
}

# Without slurmdbd, sacct fails and submitit never sees a final state. This stand-in
# answers submitit's query (sacct -o JobID,State,NodeList --parsable2 -j IDS) from scontrol.
write_sacct_shim() {
    cat >"$BASE/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct stand-in for a cluster without accounting (slurm/local-cluster.sh), read from
# `scontrol show job` (finished jobs stay there for MinJobAge). Understands -j/--jobs,
# -o/--format with the fields JobID, State, NodeList, JobName, ExitCode (others print empty),
# -n/--noheader; output is always --parsable2 (what submitit asks for); other options are ignored.
ids="" fields="JobID,State,NodeList" header=1
while [[ $# -gt 0 ]]; do
    case $1 in
    -j | --jobs) ids=$2; shift 2 ;;
    -o | --format) fields=$2; shift 2 ;;
    --jobs=*) ids=${1#*=}; shift ;;
    --format=*) fields=${1#*=}; shift ;;
    -n | --noheader) header=0; shift ;;
    *) shift ;;
    esac
done
fields=$(sed -E 's/%[0-9]+//g' <<<"$fields")
[[ $header == 1 ]] && tr ',' '|' <<<"$fields"
[[ -z $ids ]] && ids=$(squeue -h -t all -o %i | tr '\n' ',')
for id in ${ids//,/ }; do
    scontrol show job -o "$id" 2>/dev/null | awk -v fields="$fields" '{
        delete v; v["NodeList"] = "None assigned"
        for (i = 1; i <= NF; i++) {
            eq = index($i, "="); if (eq == 0) continue
            key = substr($i, 1, eq - 1); val = substr($i, eq + 1)
            if (key == "NodeList" && val == "(null)") continue
            v[key] = val
        }
        if (v["NodeList"] == "") v["NodeList"] = "None assigned"
        id = v["JobId"]
        if ("ArrayJobId" in v && "ArrayTaskId" in v) {
            task = v["ArrayTaskId"]; sub(/%.*/, "", task)  # pending rest of an array: 0-2%3
            if (task ~ /[-,]/) task = "[" task "]"
            id = v["ArrayJobId"] "_" task
        }
        n = split(fields, f, ","); line = ""
        for (k = 1; k <= n; k++) {
            name = tolower(f[k]); out = ""
            if (name == "jobid") out = id
            else if (name == "state") out = v["JobState"]
            else if (name == "nodelist") out = v["NodeList"]
            else if (name == "jobname") out = v["JobName"]
            else if (name == "exitcode") out = v["ExitCode"]
            line = line (k > 1 ? "|" : "") out
        }
        if (id != "") print line
    }'
done
EOF
    chmod 755 "$BASE/bin/sacct"
}

start_munged() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already running; reusing it (not recorded, not stopped by down)"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    runuser -u munge -- munged --force
    local i
    for i in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$RUN/munged.pid"
}

start_mariadb() {
    local data=$BASE/mysql sock=$RUN/mysqld.sock template=$BASE/mysql-template
    if [[ ! -e $template/.complete ]]; then
        rm -rf "$template"
        mariadb-install-db --no-defaults --user=root --datadir="$template" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        touch "$template/.complete"
    fi
    cp -a "$template" "$data"
    # --no-defaults: ignore /etc/mysql; small buffers, unix socket only. setsid: its own session,
    # so a signal to the process group that ran `up` (a test run ending) does not kill it.
    setsid nohup mariadbd --no-defaults --user=root --datadir="$data" --socket="$sock" \
        --pid-file="$RUN/mariadbd.real.pid" --skip-networking --log-error="$LOG/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$RUN/mariadbd.pid"
    local i
    for i in $(seq 100); do
        [[ -S $sock ]] && mariadb --no-defaults -uroot --socket="$sock" -e 'select 1' >/dev/null 2>&1 &&
            return 0
        pid_alive "$(read_pid "$RUN/mariadbd.pid")" || break
        sleep 0.1
    done
    tail -n 20 "$LOG/mariadb.log" >&2
    die "mariadbd did not start"
}

start_slurmdbd() {
    SLURM_CONF=$CONF MYSQL_UNIX_PORT=$RUN/mysqld.sock slurmdbd ||
        { tail -n 20 "$LOG/slurmdbd.log" >&2; die "slurmdbd did not start"; }
    wait_port 6819 slurmdbd "$LOG/slurmdbd.log"
}

# Clients that find no listener back off for seconds; so wait for the port first.
wait_port() { # port name logfile
    local deadline=$((SECONDS + UP_TIMEOUT))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if [[ $SECONDS -ge $deadline ]]; then
            tail -n 20 "$3" >&2
            die "$2 is not listening on port $1 after ${UP_TIMEOUT} s"
        fi
        sleep 0.05
    done
}

wait_ready() {
    local deadline=$((SECONDS + UP_TIMEOUT)) states
    export SLURM_CONF=$CONF
    while :; do
        states=$(sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ' || true)
        [[ $states == "idle " ]] && break
        if [[ $SECONDS -ge $deadline ]]; then
            say "nodes not idle after ${UP_TIMEOUT} s (states: '${states}')"
            tail -n 15 "$LOG"/slurmctld.log "$LOG"/slurmd-*.log >&2 || true
            die "cluster did not come up; logs in $LOG"
        fi
        sleep 0.2
    done
    [[ $ACCOUNTING == slurmdbd ]] || return 0
    # sacct answers, and slurmctld has registered the cluster with slurmdbd.
    while :; do
        if sacct -n -X -S now-1minutes >/dev/null 2>&1 &&
            [[ $(sacctmgr -n -P show cluster "$CLUSTER" format=ControlPort 2>/dev/null) =~ ^[1-9] ]]; then
            return 0
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            tail -n 15 "$LOG"/slurmdbd.log "$LOG"/slurmctld.log >&2 || true
            die "sacct does not answer after ${UP_TIMEOUT} s; logs in $LOG"
        fi
        sleep 0.2
    done
}

on_failed_up() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        say "up failed; stopping what it started"
        cmd_down || true
    fi
    return "$rc"
}

cmd_up() {
    check_args
    [[ $(id -u) == 0 ]] || die "must run as root (installs packages, starts daemons as root)"
    refuse_real_slurm
    if pid_alive "$(read_pid "$RUN/slurmctld.pid")"; then
        say "already up (slurmctld pid $(read_pid "$RUN/slurmctld.pid")); 'down' first to restart"
        return 0
    fi
    local t0 f
    t0=$(date +%s.%N)
    for f in $(recorded_pidfiles); do
        if pid_alive "$(read_pid "$f")"; then
            say "stopping the leftovers of an earlier, incomplete run first"
            cmd_down
            break
        fi
    done
    mkdir -p "$(dirname "$BASE")"
    install_packages
    refuse_real_slurm # a postinst must not have created one either
    prepare_base
    # On any failure from here on, stop what was started (logs stay in $LOG).
    trap on_failed_up EXIT
    ensure_hosts
    if [[ $GPUS -gt 0 ]]; then make_fake_gpus; fi
    write_configs
    start_munged
    if [[ $ACCOUNTING == slurmdbd ]]; then
        start_mariadb
        start_slurmdbd
    fi
    SLURM_CONF=$CONF slurmctld ||
        { tail -n 20 "$LOG/slurmctld.log" >&2; die "slurmctld did not start"; }
    wait_port 6817 slurmctld "$LOG/slurmctld.log"
    local n
    for n in $(seq 1 "$NODES"); do
        SLURM_CONF=$CONF slurmd -N "node$n" ||
            { tail -n 20 "$LOG/slurmd-node$n.log" >&2; die "slurmd node$n did not start"; }
    done
    wait_ready
    trap - EXIT
    say "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s:" \
        "$NODES node(s) x $CPUS CPUs, $GPUS fake GPUs, accounting=$ACCOUNTING, base $BASE"
    say "use it with:  eval \"\$($0 env)\""
}

stop_pids() { # TERM the given pidfiles' processes at once, wait, then KILL leftovers
    local f p pids=()
    for f in "$@"; do
        p=$(read_pid "$f")
        if pid_alive "$p"; then
            kill -TERM "$p" 2>/dev/null || true
            pids+=("$p")
        fi
    done
    local i alive
    for i in $(seq 150); do
        alive=0
        for p in "${pids[@]}"; do pid_alive "$p" && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        pid_alive "$p" && { say "pid $p did not exit on TERM; killing it"; kill -KILL "$p" 2>/dev/null || true; }
    done
    rm -f "$@"
}

cmd_down() {
    local t0
    t0=$(date +%s.%N)
    if [[ ! -d $RUN ]]; then
        say "nothing to stop ($BASE has no run folder)"
        return 0
    fi
    export SLURM_CONF=$CONF
    if pid_alive "$(read_pid "$RUN/slurmctld.pid")"; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for i in $(seq 150); do
                [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
                sleep 0.2
            done
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] || say "jobs still listed after 30 s; stopping anyway"
        fi
    fi
    # slurmstepd outlives slurmd, hence the jobs went first.
    local slurmds=()
    for f in "$RUN"/slurmd-*.pid; do [[ -e $f ]] && slurmds+=("$f"); done
    # Each takes ~2 s to exit on TERM, so stop them together; the database and munge last.
    stop_pids "${slurmds[@]}" "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid"
    stop_pids "$RUN/mariadbd.pid" "$RUN/munged.pid"
    say "down in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s (logs kept in $LOG)"
}

cmd_env() {
    echo "export SLURM_CONF='$CONF'"
    if [[ -x $BASE/bin/sacct ]]; then
        echo "export PATH='$BASE/bin':\"\$PATH\""
    fi
    [[ -e $CONF ]] || say "warning: $CONF does not exist yet; run '$0 up'"
}

cmd_status() {
    local f name p state any=0
    for f in $(recorded_pidfiles); do
        any=1
        name=$(basename "$f" .pid)
        p=$(read_pid "$f")
        if pid_alive "$p"; then state="running"; else state="DEAD"; fi
        printf '%-14s %-8s pid %s\n' "$name" "$state" "${p:-?}"
    done
    if [[ ! -e $RUN/munged.pid ]] && pgrep -x munged >/dev/null; then
        printf '%-14s %-8s pid %s (not started by this script)\n' munged running "$(pgrep -x munged | head -1)"
    fi
    [[ $any == 1 ]] || echo "local cluster is down (base $BASE)"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
status) cmd_status ;;
*)
    echo "usage: $0 up|down|env|status" >&2
    exit 64
    ;;
esac
