#!/usr/bin/env bash
# lab/tour.sh: the guided tour of ipclab, and the project's main command.
#
# It builds the release binaries, then walks through every lab that exists, echoing each
# command before it runs it, the way a teacher types it in class. Each lab's steps live in
# lab/NN-*/tour.sh and are run in order. It needs no root, takes under a minute, exits 0 only
# if every step worked, and leaves the machine's IPC objects exactly as it found them.
#
#     $ lab/tour.sh
#     == 01-shm-writer-reader
#     # A message through a segment. The writer creates the segment and a semaphore set ...
#     $ shm_writer -k /tmp/ipclab.x/xfr.key hello world &
#     ...
#     tour: all 49 steps worked; the machine's IPC objects are as they were.

set -u
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$IPCLAB_ROOT" || exit 1

echo "tour: building the release binaries (cargo build --release)"
cargo build --release --quiet || { echo "tour: the build failed" >&2; exit 1; }
BIN=$(release_dir)
export PATH="$BIN:$PATH"
unset IPCLAB_TRACE

BEFORE=$(ipc_snapshot)
ipclab_init
STEP=0

# say TEXT: narration between commands.
say() { printf '\n# %s\n' "$*"; }

# quoted WORD...: the words as a person types them at a shell prompt: each one as it is when
# that is safe, else in single quotes (a ' inside becomes '\''). So `hello there` shows as
# 'hello there', and every line the tour prints can be pasted into a terminal as it is.
quoted() {
    local w out=
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            out+=" $w"
        else
            out+=" '${w//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "${out# }"
}

# run COMMAND...: echo the command as typed, run it, and stop the tour if it fails.
run() {
    STEP=$((STEP + 1))
    printf '$ %s\n' "$(quoted "$@")"
    "$@" || tour_failed "$(quoted "$@")"
}

# run_line LINE: echo a shell command line (pipes, redirections) as typed, and run it in bash.
run_line() {
    STEP=$((STEP + 1))
    printf '$ %s\n' "$1"
    bash -c "$1" || tour_failed "$1"
}

# expect_lines COMMAND... -- LINE...: as run, and each LINE must be one of the lines it printed
# (for output that also holds pids and ids, like ipcview --once).
expect_lines() {
    local cmd=() got line
    while [ "$1" != "--" ]; do cmd+=("$1"); shift; done
    shift
    STEP=$((STEP + 1))
    printf '$ %s\n' "$(quoted "${cmd[@]}")"
    got=$("${cmd[@]}") || tour_failed "$(quoted "${cmd[@]}")"
    printf '%s\n' "$got"
    for line in "$@"; do
        grep -qxF -- "$line" <<<"$got" || tour_failed "$(quoted "${cmd[@]}") printed no line '$line'"
    done
}

# run_bg COMMAND...: as run, in the background (its pid is in $BG_PID and tracked for cleanup).
run_bg() {
    STEP=$((STEP + 1))
    printf '$ %s &\n' "$(quoted "$@")"
    "$@" &
    BG_PID=$!
    track_pid "$BG_PID"
}

# expect_output WANT COMMAND...: run and check that stdout is exactly WANT.
expect_output() {
    local want=$1 got
    shift
    STEP=$((STEP + 1))
    printf '$ %s\n' "$(quoted "$@")"
    got=$("$@") || tour_failed "$(quoted "$@")"
    printf '%s\n' "$got"
    [ "$got" = "$want" ] || tour_failed "$(quoted "$@") printed '$got', expected '$want'"
}

# wait_bg: wait for the last background command and stop the tour if it failed.
wait_bg() {
    wait "$BG_PID" || tour_failed "background command (pid $BG_PID) exited with $?"
}

tour_failed() {
    echo "tour: step $STEP failed: $*" >&2
    exit 1
}

say "Every command below can be pasted into a terminal as it is, after" \
    "export PATH=$(quoted "$BIN"):\$PATH. Keys come from files in $IPCLAB_WORK, a directory" \
    "of this run's own (mktemp -d; removed when the tour ends, so make your own to try them" \
    "later), and ports are picked free, so two people can run the tour at once."

for steps in "$IPCLAB_ROOT"/lab/[0-9][0-9]-*/tour.sh; do
    [ -f "$steps" ] || continue
    chapter=$(basename "$(dirname "$steps")")
    printf '\n== %s\n' "$chapter"
    # shellcheck source=/dev/null
    source "$steps"
done

# Before cleanup: anything still alive under one of the tour's keys is a leak of a program.
LEAKED=$(leftover_objects | tr '\n' ' ')
ipclab_cleanup
[ -z "$LEAKED" ] || { echo "tour: objects left behind by the programs: $LEAKED" >&2; exit 1; }

# Then compare the whole machine. A new object with a private key (0) is ours too: nothing
# else of ours uses one. A new object under some other key belongs to another program running
# meanwhile on this shared machine: worth a note, not a failure.
NEW=$(comm -13 <(echo "$BEFORE") <(ipc_snapshot))
if printf '%s\n' "$NEW" | awk '$2 == 0 { found = 1 } END { exit !found }'; then
    echo "tour: private IPC objects appeared during the tour and are still there:" >&2
    printf '%s\n' "$NEW" >&2
    exit 1
fi
[ -z "$NEW" ] || printf 'tour: note: other programs created objects meanwhile:\n%s\n' "$NEW"
echo
echo "tour: all $STEP steps worked; the machine's IPC objects are as they were."
