# lab/common.sh: what the tour and every grading script share. Sourced, never run.
#
# The one rule it serves: whatever a demo or a grader creates, it removes, even when a step
# fails or the user presses Ctrl-C. Every key comes from ftok on a file in a private work
# directory, and every key and background pid is written down the moment it exists, so that
# ipclab_cleanup (run by the EXIT trap) can kill the processes and remove the objects.

IPCLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ipclab_init: make the private work directory and install the cleanup trap.
ipclab_init() {
    IPCLAB_WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipclab.XXXXXX")
    : >"$IPCLAB_WORK/.keys"
    : >"$IPCLAB_WORK/.pids"
    trap ipclab_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ftok_key PATH PROJ: the key ftok(3) gives, as a decimal number like /proc/sysvipc prints.
# glibc: (proj & 0xff) << 24 | (st_dev & 0xff) << 16 | (st_ino & 0xffff).
ftok_key() {
    local dev ino key
    read -r dev ino < <(stat -L -c '%d %i' "$1") || return 1
    key=$(( (($2 & 0xff) << 24) | ((dev & 0xff) << 16) | (ino & 0xffff) ))
    (( key >= 2147483648 )) && key=$(( key - 4294967296 ))
    echo "$key"
}

# release_dir: where `cargo build --release` run in $IPCLAB_ROOT puts the binaries: target/release,
# or release/ under $CARGO_TARGET_DIR when the user has set one (relative to $IPCLAB_ROOT if
# relative, as cargo takes it).
release_dir() {
    local t=${CARGO_TARGET_DIR:-target}
    case $t in /*) ;; *) t="$IPCLAB_ROOT/$t" ;; esac
    echo "$t/release"
}

# key_hex KEY: a key (decimal, maybe negative, as ftok_key gives it) as the programs print it,
# 0x and eight hex digits: the same 32 bits read as unsigned.
key_hex() {
    printf '0x%08x' $(( $1 & 0xffffffff ))
}

# new_key_file NAME: an empty file in the work directory, for -k/--key-path.
new_key_file() {
    local f="$IPCLAB_WORK/$1"
    : >"$f"
    echo "$f"
}

# track_key KEY / track_pid PID: remember what ipclab_cleanup must remove or kill.
track_key() { echo "$1" >>"$IPCLAB_WORK/.keys"; }
track_pid() { echo "$1" >>"$IPCLAB_WORK/.pids"; }

# free_port KEY_BASE...: a TCP port for a server whose objects have the keys KEY_BASE + port
# (dipc: 0x44500000; an rshm_server: 0x52530000 and 0x52470000). Nobody listens on it, no
# object has one of its keys, this run has not handed it out before, and its keys are tracked.
# It is taken below the kernel's ephemeral range (usually 32768-60999), where client sockets
# get their ports, so that a client elsewhere on the machine does not happen to hold it.
free_port() {
    local p base taken
    while :; do
        p=$((10000 + RANDOM % 20000))
        grep -qx "$p" "$IPCLAB_WORK/.ports" 2>/dev/null && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        taken=
        for base in "$@"; do
            [ -n "$(objects_with_key $((base + p)))" ] && taken=1
        done
        [ -n "$taken" ] && continue
        echo "$p" >>"$IPCLAB_WORK/.ports"
        for base in "$@"; do track_key $((base + p)); done
        echo "$p"
        return
    done
}

# objects_with_key KEY: one line "kind id" per object alive with that key (decimal key).
objects_with_key() {
    local kind
    for kind in shm sem msg; do
        awk -v k="$1" -v kind="$kind" 'NR > 1 && $1 == k { print kind, $2 }' "/proc/sysvipc/$kind"
    done
}

# remove_object KIND ID: what ipcrm -m/-s/-q does.
remove_object() {
    case "$1" in
        shm) ipcrm -m "$2" 2>/dev/null ;;
        sem) ipcrm -s "$2" 2>/dev/null ;;
        msg) ipcrm -q "$2" 2>/dev/null ;;
    esac
}

# leftover_objects: every object still alive with a tracked key, one "kind id" per line.
leftover_objects() {
    local k
    [ -s "$IPCLAB_WORK/.keys" ] || return 0
    sort -u "$IPCLAB_WORK/.keys" | while read -r k; do objects_with_key "$k"; done
}

# ipclab_cleanup_since PIDS KEYS: SIGTERM (then SIGKILL) the processes tracked after the first
# PIDS, and remove the objects under the keys tracked after the first KEYS. With 0 0: all of
# them. (A pid reaped long ago may be reused by another of our processes: only the ones this
# run started are ever tracked, and they are killed at the latest when it ends.)
ipclab_cleanup_since() {
    local pid kind id k
    tail -n +$(($1 + 1)) "$IPCLAB_WORK/.pids" | while read -r pid; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.2
    tail -n +$(($1 + 1)) "$IPCLAB_WORK/.pids" | while read -r pid; do kill -KILL "$pid" 2>/dev/null; done
    tail -n +$(($2 + 1)) "$IPCLAB_WORK/.keys" | sort -u | while read -r k; do
        objects_with_key "$k" | while read -r kind id; do remove_object "$kind" "$id"; done
    done
}

# ipclab_cleanup: kill every tracked process, remove every tracked object, then the work
# directory. The EXIT trap.
ipclab_cleanup() {
    [ -n "${IPCLAB_WORK:-}" ] && [ -d "$IPCLAB_WORK" ] || return 0
    ipclab_cleanup_since 0 0
    rm -rf "$IPCLAB_WORK"
}

# ipc_snapshot: the machine's objects as "kind key id" lines, to compare before and after.
ipc_snapshot() {
    local kind
    for kind in shm sem msg; do
        awk -v kind="$kind" 'NR > 1 { print kind, $1, $2 }' "/proc/sysvipc/$kind"
    done | sort
}

# exit_within PID SECS: wait up to SECS for background PID to end, and put its exit status in
# RC; fails if it is still running then (a plain `wait` would wait for ever). Not to be called
# in $(...): only the shell that started PID can collect its status with `wait`.
exit_within() {
    local pid=$1 i
    for ((i = 0; i < $2 * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && return 1
    wait "$pid"
    RC=$?
}

# wait_for SECONDS COMMAND...: poll every 50 ms until COMMAND succeeds; fails after SECONDS.
wait_for() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 20; i++)); do
        "$@" && return 0
        sleep 0.05
    done
    "$@"
}
