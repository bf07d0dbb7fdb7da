# lab/grade/lib.sh: the grading harness. Each lab's grading script sources it.
#
# A grading script takes the directory holding the binaries to grade (default: this project's
# release build, built if missing), so an instructor can point it at a student's build, and
# `--json FILE` to also write the results in the shape the Gradescope autograder reads:
#
#     lab/grade/01-shm-writer-reader.sh                         # ipclab's own release build
#     lab/grade/01-shm-writer-reader.sh ~/alice/target/release --json results.json
#
# It prints one line per check with its points, then the score and a summary, and exits
# non-zero if anything failed:
#
#     PASS round-trip-exact-bytes (4/4)
#     FAIL timeout (0/2): a lonely shm_reader --timeout 1 exited 0, expected 1
#     score: 14/16
#     5 passed, 1 failed
#
# results.json: {"score": 14, "tests": [{"name": "timeout", "score": 0, "max_score": 2,
# "output": "a lonely shm_reader ..."}, ...]}
#
# A check is a shell function that returns 0 to pass; on failure it calls `fail "why"`, which
# ends the check there (`cmd || fail "why"`). `check NAME POINTS FUNCTION` runs it. A check is
# all or nothing: split a behaviour into two checks to give partial credit.
# Checks run one after another, each in a subshell with a time limit (GRADE_CHECK_LIMIT
# seconds, default 30; GRADE_TIMES=1 prints how long each took; GRADE_ONLY=REGEX runs only
# the checks whose names match), and every key and pid a check creates is tracked (lab/common.sh), so
# nothing outlives the grader, whatever the student's code does. See lab/grade/README.md.

# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

GRADE_PASSED=0
GRADE_FAILED=0
GRADE_SCORE=0
GRADE_TOTAL=0
GRADE_JSON=
GRADE_BINDIR=
GRADE_RESULTS=() # one JSON object per check, in order
: "${GRADE_CHECK_LIMIT:=30}"

# grade_args ARGS...: parse the grader's command line: [BINDIR] [--json FILE].
grade_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --json)
                [ $# -ge 2 ] || { echo "grade: --json needs a FILE" >&2; exit 2; }
                GRADE_JSON=$2
                shift 2
                ;;
            --json=*) GRADE_JSON=${1#--json=}; shift ;;
            -h | --help)
                echo "usage: $0 [BINDIR] [--json FILE]"
                exit 0
                ;;
            -*) echo "grade: unknown option $1 (usage: $0 [BINDIR] [--json FILE])" >&2; exit 2 ;;
            *)
                [ -z "$GRADE_BINDIR" ] || { echo "grade: one BINDIR only" >&2; exit 2; }
                GRADE_BINDIR=$1
                shift
                ;;
        esac
    done
    # The JSON file is written after the checks, from the work directory: make it absolute.
    if [ -n "$GRADE_JSON" ] && [[ "$GRADE_JSON" != /* ]]; then GRADE_JSON="$PWD/$GRADE_JSON"; fi
}

# grade_init [BINDIR] NAME...: set BIN, check that the named binaries are there.
grade_init() {
    local dir=${1:-} name
    shift || true
    if [ -z "$dir" ]; then
        dir=$(release_dir)
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
# (see check), so the exit leaves the check, never the grader. WHY is printed as one line (a
# program's stderr quoted in it may have several: "usage: ... | Try --help"), so that the FAIL
# line, which shows the last line a check printed, shows all of it.
fail() {
    local why="$*"
    why=${why%$'\n'}
    echo "${why//$'\n'/ | }"
    exit 1
}

# json_string TEXT: TEXT as a JSON string literal. Bytes outside printable ASCII (a student's
# program may print anything) are dropped, so that the file is always valid JSON.
json_string() {
    local s
    s=$(printf '%s' "$1" | LC_ALL=C tr -cd '\11\12\15\40-\176')
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# check NAME POINTS FUNCTION: run one check and print its PASS or FAIL line with its points.
#
# The check's output goes to a file, not through $(...): a command substitution waits until
# every process holding its pipe has exited, so one background process of a failed check (a
# student's writer that never quits) would hang the grader for ever. A watchdog ends a check
# that runs over GRADE_CHECK_LIMIT seconds. A failed check's own processes and objects are
# removed as it ends, so that they trouble no later check, and the failure is reported once
# (not again by no-leaks).
check() {
    local name=$1 points=$2 fn=$3 out pids keys got=0 t0=$EPOCHREALTIME ms
    # GRADE_ONLY=REGEX runs only the checks whose names match (while writing a check).
    if [ -n "${GRADE_ONLY:-}" ] && ! [[ "$name" =~ $GRADE_ONLY ]]; then return 0; fi
    pids=$(wc -l <"$IPCLAB_WORK/.pids")
    keys=$(wc -l <"$IPCLAB_WORK/.keys")
    GRADE_TOTAL=$((GRADE_TOTAL + points))
    # The braces' 2>/dev/null silences bash's "Killed" notice when the watchdog strikes.
    if { (
        cd "$IPCLAB_WORK" || exit 1
        me=$BASHPID
        # The watchdog polls, so it outlives the check by at most half a second. It is started
        # from a subshell that exits at once, so that it is not a child of the check: a check
        # may `wait` for its own background processes.
        ( (
            for ((i = 0; i < GRADE_CHECK_LIMIT * 2; i++)); do
                kill -0 "$me" 2>/dev/null || exit 0
                sleep 0.5
            done
            echo "the check ran over its limit of $GRADE_CHECK_LIMIT s"
            kill -KILL "$me" 2>/dev/null
        ) & )
        "$fn"
    ) >"$IPCLAB_WORK/.check.out" 2>&1 </dev/null; } 2>/dev/null; then
        echo "PASS $name ($points/$points)"
        GRADE_PASSED=$((GRADE_PASSED + 1))
        got=$points
        out=
    else
        out=$(grep -v '^$' "$IPCLAB_WORK/.check.out" | tail -n 1)
        out=${out:-failed with no reason given}
        echo "FAIL $name (0/$points): $out"
        GRADE_FAILED=$((GRADE_FAILED + 1))
        ipclab_cleanup_since "$pids" "$keys"
    fi
    GRADE_SCORE=$((GRADE_SCORE + got))
    if [ -n "${GRADE_TIMES:-}" ]; then
        ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
        echo "     $name took $ms ms"
    fi
    GRADE_RESULTS+=("{\"name\": $(json_string "$name"), \"score\": $got, \"max_score\": $points, \"output\": $(json_string "$out")}")
}

# modes_with_key KEY: one line "kind perms" per object alive with that key (decimal key), perms
# as /proc/sysvipc prints them (octal digits, "600"), sorted: "sem 600" then "shm 600".
modes_with_key() {
    local kind
    for kind in shm sem msg; do
        awk -v k="$1" -v kind="$kind" 'NR > 1 && $1 == k { print kind, $3 }' "/proc/sysvipc/$kind"
    done | sort
}

# freeze PID: SIGSTOP, and wait (up to 5 s) until every thread of PID has stopped. kill returns
# before the target has taken the signal: until it runs, a process asleep in semop is still
# queued on its semaphore, and a post in that moment is taken *for* it (it then stops holding
# what it took). Checks that freeze a process and then look at semaphore values need the wait.
freeze() {
    kill -STOP "$1" 2>/dev/null || return 1
    wait_for 5 all_stopped "$1"
}

# all_stopped PID: every thread of PID is stopped (state T), none running or asleep.
all_stopped() {
    local st t
    for t in /proc/"$1"/task/*/stat; do
        st=$(sed 's/^.*) //' "$t" 2>/dev/null | cut -c1) || return 1
        [ "$st" = T ] || [ "$st" = t ] || return 1
    done
    [ -d "/proc/$1/task" ]
}

# check_no_leaks: the last check of every grader: nothing with one of the grader's keys is left.
check_no_leaks() {
    local left
    left=$(leftover_objects | tr '\n' ' ')
    [ -z "$left" ] || fail "objects left behind: $left"
}

# grade_write_json FILE: the Gradescope results file.
grade_write_json() {
    local i sep=
    {
        printf '{"score": %s, "max_score": %s, "tests": [' "$GRADE_SCORE" "$GRADE_TOTAL"
        for i in "${GRADE_RESULTS[@]}"; do
            printf '%s\n  %s' "$sep" "$i"
            sep=,
        done
        printf '\n]}\n'
    } >"$1"
}

# grade_finish: print the score and the summary line (last, for scripts that match it), write
# the JSON file if asked, and exit 0 only if every check passed.
grade_finish() {
    if [ -n "$GRADE_JSON" ]; then
        grade_write_json "$GRADE_JSON" || echo "grade: cannot write $GRADE_JSON" >&2
    fi
    echo "score: $GRADE_SCORE/$GRADE_TOTAL"
    echo "$GRADE_PASSED passed, $GRADE_FAILED failed"
    [ "$GRADE_FAILED" = 0 ]
    exit $?
}
