# lab/grade/lib.sh: the grading harness. Each lab's grading script sources it.
#
# A grading script takes one optional argument, the directory holding the binaries to grade
# (default: this project's release build, built if missing), so an instructor can point it at
# a student's build:
#
#     lab/grade/01-shm-writer-reader.sh                 # ipclab's own release build
#     lab/grade/01-shm-writer-reader.sh ~/alice/target/release
#
# It prints one line per check, then a summary, and exits non-zero if anything failed:
#
#     PASS round-trip
#     FAIL timeout: reader waited 30 s, expected an exit within 3 s
#     5 passed, 1 failed
#
# A check is a shell function that returns 0 to pass; on failure it calls `fail "why"`, which
# ends the check there (`cmd || fail "why"`).
# Checks run one after another, each in a subshell, and every key and pid a check creates is
# tracked (lab/common.sh), so nothing outlives the grader, whatever the student's code does.

source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

GRADE_PASSED=0
GRADE_FAILED=0

# grade_init [BINDIR] NAME...: set BIN, check that the named binaries are there.
grade_init() {
    local dir=${1:-} name
    shift || true
    if [ -z "$dir" ]; then
        dir="$IPCLAB_ROOT/target/release"
        local missing=0
        for name in "$@"; do [ -x "$dir/$name" ] || missing=1; done
        if [ "$missing" = 1 ]; then
            (cd "$IPCLAB_ROOT" && cargo build --release --quiet) || {
                echo "grade: cargo build --release failed" >&2
                exit 2
            }
        fi
    fi
    BIN=$(cd "$dir" 2>/dev/null && pwd) || {
        echo "grade: no such directory: $dir" >&2
        exit 2
    }
    for name in "$@"; do
        if [ ! -x "$BIN/$name" ]; then
            echo "grade: $BIN/$name is missing or not executable" >&2
            exit 2
        fi
    done
    ipclab_init
}

# fail WHY: end the check that calls it, with WHY on its FAIL line. Checks run in a subshell
# (see check), so the exit leaves the check, never the grader.
fail() {
    echo "$*"
    exit 1
}

# check NAME FUNCTION: run one check and print its PASS or FAIL line.
#
# The check's output goes to a file, not through $(...): a command substitution waits until
# every process holding its pipe has exited, so one background process of a failed check (a
# student's writer that never quits) would hang the grader for ever. A failed check's own
# processes and objects are removed as it ends, so that they trouble no later check, and the
# failure is reported once (not again by no-leaks).
check() {
    local name=$1 fn=$2 out pids keys
    pids=$(wc -l <"$IPCLAB_WORK/.pids")
    keys=$(wc -l <"$IPCLAB_WORK/.keys")
    if (cd "$IPCLAB_WORK" && "$fn") >"$IPCLAB_WORK/.check.out" 2>&1 </dev/null; then
        echo "PASS $name"
        GRADE_PASSED=$((GRADE_PASSED + 1))
    else
        out=$(grep -v '^$' "$IPCLAB_WORK/.check.out" | tail -n 1)
        echo "FAIL $name: ${out:-failed with no reason given}"
        GRADE_FAILED=$((GRADE_FAILED + 1))
        ipclab_cleanup_since "$pids" "$keys"
    fi
}

# check_no_leaks: the last check of every grader: nothing with one of the grader's keys is left.
check_no_leaks() {
    local left
    left=$(leftover_objects | tr '\n' ' ')
    [ -z "$left" ] || fail "objects left behind: $left"
}

# grade_finish: print the summary line and exit 0 only if every check passed.
grade_finish() {
    echo "$GRADE_PASSED passed, $GRADE_FAILED failed"
    [ "$GRADE_FAILED" = 0 ]
    exit $?
}
