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

# new_key_file NAME: an empty file in the work directory, for -k/--key-path.
new_key_file() {
    local f="$IPCLAB_WORK/$1"
    : >"$f"
    echo "$f"
}

# track_key KEY / track_pid PID: remember what ipclab_cleanup must remove or kill.
track_key() { echo "$1" >>"$IPCLAB_WORK/.keys"; }
track_pid() { echo "$1" >>"$IPCLAB_WORK/.pids"; }

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

# ipclab_cleanup: SIGTERM the tracked processes (then SIGKILL), remove the tracked objects.
ipclab_cleanup() {
    local pid kind id
    [ -n "${IPCLAB_WORK:-}" ] && [ -d "$IPCLAB_WORK" ] || return 0
    while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$IPCLAB_WORK/.pids"
    sleep 0.2
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$IPCLAB_WORK/.pids"
    leftover_objects | while read -r kind id; do remove_object "$kind" "$id"; done
    rm -rf "$IPCLAB_WORK"
}

# ipc_snapshot: the machine's objects as "kind key id" lines, to compare before and after.
ipc_snapshot() {
    local kind
    for kind in shm sem msg; do
        awk -v kind="$kind" 'NR > 1 { print kind, $1, $2 }' "/proc/sysvipc/$kind"
    done | sort
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
