#!/usr/bin/env bash
# lab/grade/01-shm-writer-reader.sh: grades shm_writer / shm_reader (seed 002, lab 01).
#
#     lab/grade/01-shm-writer-reader.sh [BINDIR]     # default: this project's release build
#
# One check per behaviour the lab asks for, using only the documented command line
# (-k/--key-path, -t/--timeout, -s/--size, --stream, WORDs or stdin), so it grades a student's
# build as well as ours. Every check uses its own key file in a private directory, and every
# key and background pid is tracked, so nothing outlives the grader.
source "$(dirname "$0")/lib.sh"
grade_init "${1:-}" shm_writer shm_reader

W="$BIN/shm_writer"
R="$BIN/shm_reader"

# key_for NAME: a fresh key file, its key tracked for the leak check; prints the path.
key_for() {
    local f
    f=$(new_key_file "$1.key")
    track_key "$(ftok_key "$f" 65)"
    echo "$f"
}

# nothing_on KEYFILE: no object left with the key of KEYFILE.
nothing_on() {
    local left
    left=$(objects_with_key "$(ftok_key "$1" 65)" | tr '\n' ' ')
    [ -z "$left" ] || fail "objects left behind: $left"
}

# The writer goes first with WORDs; the reader prints them and a newline; the writer exits 0.
check_round_trip() {
    local kf out rc w
    kf=$(key_for rt)
    "$W" -k "$kf" hello world 2>/dev/null &
    w=$!
    track_pid "$w"
    sleep 0.3
    out=$(timeout 10 "$R" -k "$kf" 2>/dev/null) || fail "shm_reader exited $?"
    [ "$out" = "hello world" ] || fail "shm_reader printed '$out', expected 'hello world'"
    exit_within "$w" 5 || fail "shm_writer still running 5 s after the reader finished"
    rc=$RC
    [ "$rc" = 0 ] || fail "shm_writer exited $rc"
    nothing_on "$kf"
}

# The reader goes first and waits; the writer sends stdin.
check_reader_first() {
    local kf r rc
    kf=$(key_for rf)
    "$R" -k "$kf" >rf.out 2>/dev/null &
    r=$!
    track_pid "$r"
    sleep 0.5
    printf 'from stdin\n' | timeout 10 "$W" -k "$kf" 2>/dev/null || fail "shm_writer exited $?"
    exit_within "$r" 5 || fail "shm_reader still running after the writer finished"
    rc=$RC
    [ "$rc" = 0 ] || fail "shm_reader exited $rc"
    [ "$(cat rf.out)" = "from stdin" ] || fail "shm_reader printed '$(cat rf.out)'"
    nothing_on "$kf"
}

# Alone, each side gives up after --timeout with status 1 and leaves nothing.
check_timeout() {
    local kf start rc
    kf=$(key_for to)
    start=$(date +%s%N)
    timeout 10 "$R" -k "$kf" --timeout 1 >/dev/null 2>&1
    rc=$?
    [ "$rc" = 1 ] || fail "a lonely shm_reader --timeout 1 exited $rc, expected 1"
    (( ($(date +%s%N) - start) / 1000000 < 4000 )) || fail "shm_reader took over 4 s to time out"
    timeout 10 "$W" -k "$kf" --timeout 1 nobody reads >/dev/null 2>&1
    rc=$?
    [ "$rc" = 1 ] || fail "a lonely shm_writer --timeout 1 exited $rc, expected 1"
    nothing_on "$kf"
}

# A message larger than --size is refused: non-zero exit, a message, nothing created.
check_oversize() {
    local kf rc err
    kf=$(key_for os)
    err=$(timeout 10 "$W" -k "$kf" --size 16 --timeout 1 this message is longer than sixteen 2>&1)
    rc=$?
    [ "$rc" != 0 ] || fail "a 36-byte message with --size 16 was accepted"
    [ "$rc" != 124 ] || fail "shm_writer hung instead of refusing the message"
    [ -n "$err" ] || fail "shm_writer refused the message without saying why"
    head -c 5000 /dev/zero | timeout 10 "$W" -k "$kf" --size 4096 --timeout 1 >/dev/null 2>&1
    rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "5000 bytes on stdin with --size 4096: exit $rc"
    nothing_on "$kf"
}

# --stream moves files of awkward sizes byte for byte, in both start orders.
check_stream() {
    local kf n r w rc
    kf=$(key_for st)
    for n in 0 1 4097 3000001; do
        head -c "$n" /dev/urandom >st.in
        if [ $((n % 2)) = 0 ]; then
            "$R" --stream -k "$kf" >st.out 2>/dev/null &
            r=$!
            track_pid "$r"
            sleep 0.2
            timeout 20 "$W" --stream -k "$kf" <st.in 2>/dev/null || fail "$n bytes: shm_writer exited $?"
        else
            "$W" --stream -k "$kf" <st.in 2>/dev/null &
            w=$!
            track_pid "$w"
            sleep 0.2
            "$R" --stream -k "$kf" >st.out 2>/dev/null &
            r=$!
            track_pid "$r"
            exit_within "$w" 20 || fail "$n bytes: shm_writer did not finish"
            rc=$RC
            [ "$rc" = 0 ] || fail "$n bytes: shm_writer exited $rc"
        fi
        exit_within "$r" 20 || fail "$n bytes: shm_reader did not finish"
        rc=$RC
        [ "$rc" = 0 ] || fail "$n bytes: shm_reader exited $rc"
        cmp -s st.in st.out || fail "$n bytes: the output differs from the input"
    done
    nothing_on "$kf"
}

# size_at_least FILE N: FILE holds at least N bytes.
size_at_least() {
    [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge "$2" ]
}

# start_flowing NAME: a stream whose writer reads a FIFO held open on fd 7, with 100 000 bytes
# already through. Sets KF, WPID, RPID.
start_flowing() {
    KF=$(key_for "$1")
    mkfifo "$1.fifo"
    "$W" --stream -k "$KF" <"$1.fifo" 2>/dev/null &
    WPID=$!
    track_pid "$WPID"
    exec 7>"$1.fifo"
    "$R" --stream -k "$KF" >"$1.out" 2>/dev/null &
    RPID=$!
    track_pid "$RPID"
    head -c 100000 /dev/urandom >&7
    wait_for 10 size_at_least "$1.out" 100000 || fail "the first 100000 bytes did not arrive"
}

# A peer killed with SIGKILL mid-stream: the survivor exits non-zero within 5 s, and no
# object is left (the writer removes its own; the reader removes a dead writer's).
check_peer_death() {
    local rc
    start_flowing pdw || return 1
    kill -KILL "$WPID"
    exit_within "$RPID" 5 || fail "shm_reader still running 5 s after the writer was killed"
    rc=$RC
    [ "$rc" != 0 ] || fail "shm_reader exited 0 after its writer was killed mid-stream"
    exec 7>&-
    nothing_on "$KF" || return 1

    start_flowing pdr || return 1
    kill -KILL "$RPID"
    exit_within "$WPID" 5 || fail "shm_writer still running 5 s after the reader was killed"
    rc=$RC
    [ "$rc" != 0 ] || fail "shm_writer exited 0 after its reader was killed mid-stream"
    exec 7>&-
    nothing_on "$KF"
}

check round-trip check_round_trip
check reader-first check_reader_first
check timeout check_timeout
check oversize check_oversize
check stream-byte-exact check_stream
check peer-death check_peer_death
check no-leaks check_no_leaks
grade_finish
