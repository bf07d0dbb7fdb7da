#!/usr/bin/env bash
# lab/grade/01-shm-writer-reader.sh: grades shm_writer / shm_reader (seed 002, lab 01).
#
#     lab/grade/01-shm-writer-reader.sh [BINDIR] [--json FILE]   # default: this project's build
#
# Uses only the documented command line (-k/--key-path, -i/--proj-id, -t/--timeout, -s/--size,
# --mode, --stream, WORDs or stdin), so it grades a student's build as well as ours. Output is
# always compared as exact bytes (files and cmp, never $(...), which strips final newlines).
#
# What is graded (behaviour -> check, points):
#   the writer first with WORDs; the reader prints them and "\n"; both exit 0  -> round-trip (2)
#   the reader first and waits; the writer sends stdin                         -> reader-first (2)
#   a message is the exact bytes: binary, no final newline, empty, and stdin
#     from a pipe that delivers it in pieces (read to its end, not once)       -> message-exact-bytes (3)
#   --size N holds N-1 and N bytes; N+1 is refused (exit 1, nothing created);
#     default 4096 from stdin: 4096 ok, 4097 refused; --size above the
#     default from stdin: N ok, N+1 refused (the limit is --size, not 4096)    -> size-boundaries (3)
#   alone, each side gives up after --timeout: exit 1, a message, nothing left -> timeout (2)
#   --stream is byte exact at the slot and ring edges, in both start orders,
#     also through the smallest ring (--slots 1, --slot-size 1)                -> stream-byte-exact (4)
#   a stream that pauses (no input, a stopped reader) longer than --timeout
#     goes on: the timeout is only for the peer to show up                     -> slow-peer-patience (2)
#   a peer killed with SIGKILL mid-stream: the survivor exits 1 within 5 s and
#     nothing is left (the reader removes a dead writer's objects)             -> peer-death (3)
#   SIGTERM/SIGINT to the program itself, writer or reader, waiting or mid-
#     stream: exit 1, "stopped by SIG...", its objects gone, the peer exits 1  -> signals-clean-up (4)
#   the reader attaches read-only, the writer read-write                       -> reader-attaches-read-only (1)
#   a new writer or a reader removes a killed writer's orphans and says so     -> orphans-removed (2)
#   ipcrm under a waiting writer: its segment (writer stopped): the reader exits
#     1 at once, the writer when it goes on; its set: the writer exits 1 at
#     once; each says the object was removed by someone else; nothing is left  -> ipcrm-under-a-waiting-writer (2)
#   a reader of the wrong mode and a second reader are refused                 -> wrong-mode-second-reader (2)
#   -i/--proj-id, -m/--mode and -s/--size (both spellings) reach the kernel
#     objects (key, permissions of both, size); without --mode both are 0600  -> proj-id-and-mode (1)
#   usage errors exit 2 on stderr (unknown flags, WORDs with --stream or to the
#     reader, --size with --stream, --slots/--slot-size without it, bad
#     numbers); --help on stdout exits 0; a missing key path names ftok        -> usage (1)
#   nothing is left on any key the grader used                                 -> no-leaks (1)
source "$(dirname "$0")/lib.sh"
grade_args "$@"
grade_init "$GRADE_BINDIR" shm_writer shm_reader

W="$BIN/shm_writer"
R="$BIN/shm_reader"

# key_for NAME [PROJ]: a fresh key file, its key tracked for the leak check; prints the path.
key_for() {
    local f
    f=$(new_key_file "$1.key")
    track_key "$(ftok_key "$f" "${2:-65}")"
    echo "$f"
}

# nothing_on KEYFILE [PROJ]: no object left with the key of KEYFILE.
nothing_on() {
    local left
    left=$(objects_with_key "$(ftok_key "$1" "${2:-65}")" | tr '\n' ' ')
    [ -z "$left" ] || fail "objects left behind: $left"
}

# objects_on KEYFILE: how many objects have the key of KEYFILE.
objects_on() { objects_with_key "$(ftok_key "$1" 65)" | wc -l; }

# same FILE WANT WHAT: FILE holds exactly the bytes of WANT (a file).
same() {
    cmp -s "$1" "$2" ||
        fail "$3: got $(stat -c %s "$1") bytes [$(head -c 60 "$1" | od -An -c | tr -s ' \n' ' ')], expected $(stat -c %s "$2") bytes [$(head -c 60 "$2" | od -An -c | tr -s ' \n' ' ')]"
}

# bg_reader NAME ARGS...: a reader in the background, stdout NAME.out, stderr NAME.err; RPID.
bg_reader() {
    local n=$1
    shift
    "$R" "$@" >"$n.out" 2>"$n.err" &
    RPID=$!
    track_pid "$RPID"
}

# bg_writer NAME INPUT ARGS...: a writer in the background reading INPUT; WPID.
bg_writer() {
    local n=$1 in=$2
    shift 2
    "$W" "$@" <"$in" >"$n.wout" 2>"$n.werr" &
    WPID=$!
    track_pid "$WPID"
}

writer_up() { [ "$(objects_on "$1")" -ge 2 ]; }

# message_via_stdin NAME INFILE ARGS...: reader first, then a writer fed INFILE; both must
# exit 0; the reader's output is NAME.out.
message_via_stdin() {
    local n=$1 in=$2 kf=$3
    shift 3
    bg_reader "$n" -k "$kf"
    sleep 0.1
    timeout 10 "$W" -k "$kf" "$@" <"$in" >/dev/null 2>"$n.werr" || fail "$n: shm_writer exited $?: $(cat "$n.werr")"
    exit_within "$RPID" 10 || fail "$n: shm_reader still running after the writer finished"
    [ "$RC" = 0 ] || fail "$n: shm_reader exited $RC: $(cat "$n.err")"
}

check_round_trip() {
    local kf w
    kf=$(key_for rt)
    "$W" -k "$kf" hello world >/dev/null 2>rt.werr &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer made no segment and semaphore set: $(cat rt.werr)"
    grep -q "^shm_writer: key 0x" rt.werr || fail "shm_writer did not print its key line: $(cat rt.werr)"
    timeout 10 "$R" -k "$kf" >rt.out 2>rt.err || fail "shm_reader exited $?: $(cat rt.err)"
    printf 'hello world\n' >rt.want
    same rt.out rt.want "shm_reader's output"
    exit_within "$w" 5 || fail "shm_writer still running 5 s after the reader finished"
    [ "$RC" = 0 ] || fail "shm_writer exited $RC"
    nothing_on "$kf"
}

check_reader_first() {
    local kf
    kf=$(key_for rf)
    printf 'from stdin\n' >rf.in
    bg_reader rf -k "$kf"
    sleep 0.4
    kill -0 "$RPID" 2>/dev/null || fail "shm_reader did not wait for a writer: $(cat rf.err)"
    timeout 10 "$W" -k "$kf" <rf.in >/dev/null 2>rf.werr || fail "shm_writer exited $?: $(cat rf.werr)"
    exit_within "$RPID" 5 || fail "shm_reader still running after the writer finished"
    [ "$RC" = 0 ] || fail "shm_reader exited $RC"
    same rf.out rf.in "shm_reader's output"
    nothing_on "$kf"
}

check_exact_bytes() {
    local kf i
    kf=$(key_for eb)
    # 1000 bytes cycling through every byte value, NULs and newlines included.
    for ((i = 0; i < 1000; i++)); do printf "\\$(printf '%03o' $((i % 256)))"; done >eb.bin
    message_via_stdin eb eb.bin "$kf"
    same eb.out eb.bin "a binary message"
    printf 'no final newline' >eb.nonl
    message_via_stdin eb eb.nonl "$kf"
    same eb.out eb.nonl "a message without a final newline"
    printf 'two\n\n' >eb.two
    message_via_stdin eb eb.two "$kf"
    same eb.out eb.two "a message ending in two newlines"
    : >eb.empty
    message_via_stdin eb eb.empty "$kf"
    same eb.out eb.empty "an empty message"
    # stdin from a pipe whose writer pauses: read(2) returns the first piece alone, and the
    # message is everything up to end of file, not what the first read got.
    bg_reader eb -k "$kf"
    sleep 0.1
    { printf 'first piece, '; sleep 0.3; printf 'second piece, '; sleep 0.3; printf 'last\n'; } |
        timeout 10 "$W" -k "$kf" >/dev/null 2>eb.werr || fail "a message from a slow pipe: shm_writer exited $?: $(cat eb.werr)"
    exit_within "$RPID" 10 || fail "shm_reader still running after the writer finished"
    [ "$RC" = 0 ] || fail "shm_reader exited $RC: $(cat eb.err)"
    printf 'first piece, second piece, last\n' >eb.pieces
    same eb.out eb.pieces "a message piped in three pieces, 0.3 s apart"
    nothing_on "$kf"
}

# shm_writer refuses sb.in on stdin as too large for its segment: exit 1, "message too large",
# and nothing left on the key. Arguments: the key file, what the case is, shm_writer's options.
refused_as_too_large() {
    local kf=$1 what=$2 rc
    shift 2
    timeout 10 "$W" -k "$kf" --timeout 2 "$@" <sb.in >/dev/null 2>sb.err
    rc=$?
    [ "$rc" = 1 ] || fail "$what: shm_writer exited $rc, expected 1"
    grep -q "^shm_writer: message too large" sb.err || fail "$what said: $(cat sb.err)"
    nothing_on "$kf"
}

check_size_boundaries() {
    local kf rc n
    kf=$(key_for sb)
    for n in 999 1000; do
        head -c "$n" /dev/urandom >sb.in
        message_via_stdin sb sb.in "$kf" -s 1000
        same sb.out sb.in "$n bytes with --size 1000"
    done
    head -c 1001 /dev/urandom >sb.in
    refused_as_too_large "$kf" "1001 bytes with --size 1000" --size 1000
    timeout 10 "$W" -k "$kf" --size 8 --timeout 2 12345678 >/dev/null 2>sb.err
    rc=$?
    [ "$rc" = 1 ] || fail "the 9-byte message '12345678\\n' with --size 8: exit $rc, expected 1"
    nothing_on "$kf"
    head -c 4096 /dev/urandom >sb.in
    message_via_stdin sb sb.in "$kf"
    same sb.out sb.in "4096 bytes with the default size"
    head -c 4097 /dev/zero >sb.in
    refused_as_too_large "$kf" "4097 bytes on stdin with the default size"
    # --size above the default: stdin is limited by --size, not by 4096.
    head -c 6000 /dev/urandom >sb.in
    message_via_stdin sb sb.in "$kf" --size 6000
    same sb.out sb.in "6000 bytes from stdin with --size 6000"
    head -c 6001 /dev/urandom >sb.in
    refused_as_too_large "$kf" "6001 bytes on stdin with --size 6000" --size 6000
}

check_timeout() {
    local kf start ms rc
    kf=$(key_for to)
    start=$(date +%s%N)
    timeout 10 "$R" -k "$kf" --timeout 1 >to.out 2>to.err
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$rc" = 1 ] || fail "a lonely shm_reader --timeout 1 exited $rc, expected 1"
    ((ms >= 900 && ms < 4000)) || fail "a lonely shm_reader --timeout 1 gave up after $ms ms"
    grep -q "^shm_reader: timed out" to.err || fail "shm_reader said: $(cat to.err)"
    [ ! -s to.out ] || fail "a lonely shm_reader printed something on stdout"
    start=$(date +%s%N)
    timeout 10 "$W" -k "$kf" -t 1 nobody reads >/dev/null 2>to.err
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$rc" = 1 ] || fail "a lonely shm_writer -t 1 exited $rc, expected 1"
    ((ms >= 900 && ms < 4000)) || fail "a lonely shm_writer -t 1 gave up after $ms ms"
    grep -q "shm_writer: timed out" to.err || fail "shm_writer said: $(cat to.err)"
    nothing_on "$kf"
    timeout 10 "$W" -k "$kf" --stream --timeout 1 </dev/null >/dev/null 2>to.err
    rc=$?
    [ "$rc" = 1 ] || fail "a lonely shm_writer --stream --timeout 1 exited $rc, expected 1"
    nothing_on "$kf"
}

check_stream() {
    local kf n i=0
    kf=$(key_for st)
    # Empty, one byte, around a page, around a slot (--slot-size 4096, 4 slots: the ring is
    # 16384), a few ring turns; then the default ring (256 KiB slots) around its edges.
    for n in 0 1 4095 4096 4097 16383 16384 16385 100001; do
        head -c "$n" /dev/urandom >st.in
        stream_one "$kf" "$n" $((i++ % 2)) --slots 4 --slot-size 4096
    done
    for n in 262143 262144 262145 3000001; do
        head -c "$n" /dev/urandom >st.in
        stream_one "$kf" "$n" $((i++ % 2))
    done
    # The smallest ring: one slot, of one byte (every byte is a block of its own), and one slot
    # of the default size.
    head -c 1000 /dev/urandom >st.in
    stream_one "$kf" 1000 1 --slots 1 --slot-size 1
    head -c 300000 /dev/urandom >st.in
    stream_one "$kf" 300000 0 --slots 1
    printf 'text without a final newline' >st.in
    stream_one "$kf" text 0
    nothing_on "$kf"
}

# stream_one KF WHAT READER_FIRST OPTS...: st.in through a stream, compared with cmp.
stream_one() {
    local kf=$1 what=$2 first=$3
    shift 3
    if [ "$first" = 1 ]; then
        bg_reader st --stream -k "$kf"
        sleep 0.1
        timeout 20 "$W" --stream -k "$kf" "$@" <st.in 2>st.werr || fail "$what bytes: shm_writer exited $?: $(cat st.werr)"
    else
        bg_writer st st.in --stream -k "$kf" "$@"
        wait_for 5 writer_up "$kf"
        bg_reader st --stream -k "$kf"
        exit_within "$WPID" 20 || fail "$what bytes: shm_writer did not finish"
        [ "$RC" = 0 ] || fail "$what bytes: shm_writer exited $RC: $(cat st.werr)"
    fi
    exit_within "$RPID" 20 || fail "$what bytes: shm_reader did not finish"
    [ "$RC" = 0 ] || fail "$what bytes: shm_reader exited $RC: $(cat st.err)"
    same st.out st.in "a stream of $what bytes"
}

# size_at_least FILE N: FILE holds at least N bytes.
size_at_least() { [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge "$2" ]; }

# start_flowing NAME: a stream whose writer reads a FIFO held open on fd 7, with 100 000 bytes
# already through. Sets KF, WPID, RPID.
start_flowing() {
    KF=$(key_for "$1")
    mkfifo "$1.fifo"
    "$W" --stream -k "$KF" <"$1.fifo" 2>"$1.werr" &
    WPID=$!
    track_pid "$WPID"
    exec 7>"$1.fifo"
    "$R" --stream -k "$KF" >"$1.out" 2>"$1.err" 7>&- &
    RPID=$!
    track_pid "$RPID"
    head -c 100000 /dev/urandom >&7
    wait_for 10 size_at_least "$1.out" 100000 || fail "the first 100000 bytes did not arrive"
}

check_peer_death() {
    start_flowing pdw || return 1
    kill -KILL "$WPID"
    exit_within "$RPID" 5 || fail "shm_reader still running 5 s after the writer was killed"
    [ "$RC" = 1 ] || fail "shm_reader exited $RC after its writer was killed mid-stream, expected 1"
    grep -q "removed the orphaned objects" pdw.err || fail "the reader did not report removing the dead writer's objects: $(cat pdw.err)"
    exec 7>&-
    nothing_on "$KF" || return 1

    start_flowing pdr || return 1
    kill -KILL "$RPID"
    exit_within "$WPID" 5 || fail "shm_writer still running 5 s after the reader was killed"
    [ "$RC" = 1 ] || fail "shm_writer exited $RC after its reader was killed mid-stream, expected 1"
    exec 7>&-
    nothing_on "$KF"
}

# Once both are there, neither gives up on a slow peer: --timeout is only for the other side to
# show up. A stream with --timeout 1 on both sides pauses 2 s with no input (the writer waits on
# stdin, the reader on a full slot), then its reader is stopped for 2 s while the ring is full
# (the writer waits for an empty slot); both must go on and deliver every byte.
check_slow_peer() {
    local kf
    kf=$(key_for slow)
    mkfifo slow.fifo
    "$W" --stream -k "$kf" --timeout 1 --slots 2 --slot-size 4096 <slow.fifo 2>slow.werr &
    WPID=$!
    track_pid "$WPID"
    exec 7>slow.fifo
    "$R" --stream -k "$kf" -t 1 >slow.out 2>slow.err 7>&- &
    RPID=$!
    track_pid "$RPID"
    head -c 20000 /dev/urandom >slow.in
    head -c 10000 slow.in >&7
    wait_for 10 size_at_least slow.out 10000 || fail "the first 10000 bytes did not arrive: $(cat slow.werr slow.err)"
    sleep 2
    kill -0 "$WPID" 2>/dev/null || fail "shm_writer --timeout 1 gave up while its input paused 2 s: $(cat slow.werr)"
    kill -0 "$RPID" 2>/dev/null || fail "shm_reader -t 1 gave up while its writer paused 2 s: $(cat slow.err)"
    kill -STOP "$RPID"
    tail -c +10001 slow.in >&7
    sleep 2
    kill -CONT "$RPID"
    kill -0 "$WPID" 2>/dev/null || fail "shm_writer --timeout 1 gave up while its reader was stopped 2 s: $(cat slow.werr)"
    exec 7>&-
    exit_within "$WPID" 10 || fail "shm_writer did not finish after its input ended"
    [ "$RC" = 0 ] || fail "shm_writer exited $RC after a slow stream: $(cat slow.werr)"
    exit_within "$RPID" 10 || fail "shm_reader did not finish"
    [ "$RC" = 0 ] || fail "shm_reader exited $RC after a slow stream: $(cat slow.err)"
    same slow.out slow.in "a stream with pauses"
    nothing_on "$kf"
}

# The reader owns nothing and attaches read-only: its mapping of the segment is r--s, the
# writer's rw-s (/proc/PID/maps names a System V segment /SYSV<key in hex>).
check_reader_read_only() {
    local key perms
    start_flowing ro || return 1
    key=$(key_hex "$(ftok_key "$KF" 65)")
    key=SYSV${key#0x}
    perms=$(awk -v k="/$key" '$6 == k { print $2 }' "/proc/$RPID/maps" | sort -u | tr '\n' ' ')
    [ "$perms" = "r--s " ] || fail "the reader maps the segment with '$perms', expected read-only 'r--s'"
    perms=$(awk -v k="/$key" '$6 == k { print $2 }' "/proc/$WPID/maps" | sort -u | tr '\n' ' ')
    [ "$perms" = "rw-s " ] || fail "the writer maps the segment with '$perms', expected 'rw-s'"
    exec 7>&-
    exit_within "$WPID" 10 && [ "$RC" = 0 ] || fail "the writer did not finish after its input ended"
    exit_within "$RPID" 10 && [ "$RC" = 0 ] || fail "the reader did not finish"
    nothing_on "$KF"
}

# stopped_by PID SIG PROG ERRFILE: PID exits 1 within 5 s and says it was stopped by SIG.
stopped_by() {
    exit_within "$1" 5 || fail "$3 still running 5 s after SIG$2"
    [ "$RC" = 1 ] || fail "$3 exited $RC after SIG$2, expected 1"
    grep -q "^$3: stopped by SIG$2\$" "$4" || fail "$3 after SIG$2 said: $(tail -n 1 "$4")"
}

check_signals() {
    local kf w r
    # SIGTERM to the writer mid-stream: it removes its own objects; the reader notices.
    start_flowing sgw || return 1
    kill -TERM "$WPID"
    stopped_by "$WPID" TERM shm_writer sgw.werr
    nothing_on "$KF"
    exit_within "$RPID" 5 || fail "shm_reader still running after its writer was stopped"
    [ "$RC" = 1 ] || fail "shm_reader exited $RC after its writer was stopped mid-stream, expected 1"
    exec 7>&-
    # SIGTERM to the reader mid-stream: it stops; the writer notices and cleans up.
    start_flowing sgr || return 1
    kill -TERM "$RPID"
    stopped_by "$RPID" TERM shm_reader sgr.err
    exit_within "$WPID" 5 || fail "shm_writer still running after its reader was stopped"
    [ "$RC" = 1 ] || fail "shm_writer exited $RC after its reader was stopped, expected 1"
    exec 7>&-
    nothing_on "$KF"
    # SIGINT to a message writer waiting for its reader.
    kf=$(key_for sgm)
    "$W" -k "$kf" unread >/dev/null 2>sgm.err &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer made no objects"
    sleep 0.1
    kill -INT "$w"
    stopped_by "$w" INT shm_writer sgm.err
    nothing_on "$kf"
    # SIGINT to a reader waiting for a writer, and SIGTERM to a writer waiting on stdin.
    "$R" -k "$kf" --stream >/dev/null 2>sgr2.err &
    r=$!
    track_pid "$r"
    sleep 0.3
    kill -INT "$r"
    stopped_by "$r" INT shm_reader sgr2.err
    mkfifo sgm.fifo
    "$W" -k "$kf" <sgm.fifo >/dev/null 2>sgm2.err &
    w=$!
    track_pid "$w"
    exec 8>sgm.fifo
    sleep 0.3
    kill -TERM "$w"
    stopped_by "$w" TERM shm_writer sgm2.err
    exec 8>&-
    nothing_on "$kf"
}

check_orphans() {
    local kf w
    kf=$(key_for or)
    "$W" -k "$kf" lost >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer made no objects"
    kill -KILL "$w"
    exit_within "$w" 5
    [ "$(objects_on "$kf")" = 2 ] || fail "a writer killed by SIGKILL should leave its 2 objects, found $(objects_on "$kf")"
    # A new writer meets them first.
    timeout 10 "$W" -k "$kf" found >/dev/null 2>or.werr &
    w=$!
    track_pid "$w"
    wait_for 5 grep -q "removed the orphaned objects of a dead writer" or.werr ||
        fail "a new writer did not remove and report the orphans: $(cat or.werr)"
    timeout 10 "$R" -k "$kf" >or.out 2>/dev/null || fail "shm_reader exited $? after the orphans were removed"
    printf 'found\n' >or.want
    same or.out or.want "the message after the orphans"
    exit_within "$w" 5 || fail "the new writer did not finish"
    [ "$RC" = 0 ] || fail "the new writer exited $RC"
    nothing_on "$kf"
    # A reader meets them first.
    "$W" -k "$kf" lost >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer made no objects"
    kill -KILL "$w"
    exit_within "$w" 5
    timeout 10 "$R" -k "$kf" --timeout 1 >/dev/null 2>or.err
    grep -q "removed the orphaned objects of a dead writer" or.err ||
        fail "a reader did not remove and report the orphans: $(cat or.err)"
    nothing_on "$kf"
}

# published KEYFILE: the writer's objects are there and it has posted on its set (the last step
# before it waits for a reader: a semop sets the set's otime, column 9 of /proc/sysvipc/sem).
published() {
    writer_up "$1" &&
        awk -v k="$(ftok_key "$1" 65)" 'NR > 1 && $1 == k && $9 != 0 { f = 1 } END { exit !f }' /proc/sysvipc/sem
}

# ipcrm takes a waiting writer's objects. The segment (the writer stopped first, so that the
# reader looks before the writer can notice): the reader must not take a writer without a
# segment for no writer at all (and wait for its --timeout), and the writer, once it goes on,
# must notice the mark (ipcrm -m wakes nobody). The set: the writer must say so at once, not
# take it for a reader that never came. Both exit 1; nothing is left.
check_ipcrm_under_writer() {
    local kf key hex w shm sem line
    kf=$(key_for rmw)
    key=$(ftok_key "$kf" 65)
    hex=$(key_hex "$key")
    "$W" -k "$kf" -t 20 hello >/dev/null 2>rmw.werr &
    w=$!
    track_pid "$w"
    wait_for 5 published "$kf" || fail "shm_writer never made and published its objects: $(cat rmw.werr)"
    shm=$(objects_with_key "$key" | awk '$1 == "shm" { print $2 }')
    sem=$(objects_with_key "$key" | awk '$1 == "sem" { print $2 }')
    freeze "$w" || fail "shm_writer did not stop on SIGSTOP"
    ipcrm -m "$shm" || fail "ipcrm -m $shm failed"
    bg_reader rmw -k "$kf" --timeout 10
    exit_within "$RPID" 5 || fail "shm_reader --timeout 10 still waits 5 s after the writer's segment was removed (a writer without a segment taken for no writer?)"
    [ "$RC" = 1 ] || fail "shm_reader exited $RC when the writer's segment was gone, expected 1"
    printf 'shm_reader: the writer on key %s (semid %s) has no segment: it was removed by someone else (ipcrm?)\n' "$hex" "$sem" >rmw.want
    cmp -s rmw.err rmw.want || fail "shm_reader, the writer's segment removed by ipcrm, said '$(cat rmw.err)', expected '$(cat rmw.want)'"
    [ ! -s rmw.out ] || fail "shm_reader printed something on stdout without a segment"
    kill -CONT "$w"
    exit_within "$w" 5 || fail "shm_writer -t 20 still runs 5 s after it went on with its segment removed (ipcrm -m wakes nobody: it must look)"
    [ "$RC" = 1 ] || fail "shm_writer exited $RC after its segment was removed, expected 1"
    line=$(tail -n 1 rmw.werr)
    [ "$line" = "shm_writer: our segment $shm was removed by someone else (ipcrm?)" ] ||
        fail "shm_writer, its segment $shm removed by ipcrm, said last: '$line'"
    nothing_on "$kf"
    # The set, under a writer that waits.
    "$W" -k "$kf" -t 20 hello >/dev/null 2>rmw.werr &
    w=$!
    track_pid "$w"
    wait_for 5 published "$kf" || fail "shm_writer never made and published its objects: $(cat rmw.werr)"
    sem=$(objects_with_key "$key" | awk '$1 == "sem" { print $2 }')
    ipcrm -s "$sem" || fail "ipcrm -s $sem failed"
    exit_within "$w" 5 || fail "shm_writer -t 20 still runs 5 s after its semaphore set was removed"
    [ "$RC" = 1 ] || fail "shm_writer exited $RC after its semaphore set was removed, expected 1"
    line=$(tail -n 1 rmw.werr)
    [ "$line" = "shm_writer: our semaphore set $sem was removed by someone else (ipcrm?)" ] ||
        fail "shm_writer, its semaphore set $sem removed by ipcrm, said last: '$line'"
    nothing_on "$kf"
}

check_wrong_mode_second_reader() {
    local kf w r1 rc
    kf=$(key_for wm)
    "$W" -k "$kf" once >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer made no objects"
    timeout 10 "$R" -k "$kf" --stream >/dev/null 2>wm.err
    rc=$?
    [ "$rc" = 1 ] || fail "a --stream reader of a message writer exited $rc, expected 1"
    grep -q "is in message mode" wm.err || fail "a --stream reader of a message writer said: $(cat wm.err)"
    timeout 10 "$R" -k "$kf" >wm.out 2>/dev/null || fail "the right reader failed after a wrong one"
    printf 'once\n' >wm.want
    same wm.out wm.want "the message after a wrong-mode reader"
    exit_within "$w" 5 && [ "$RC" = 0 ] || fail "the writer did not exit 0"
    mkfifo wm.fifo
    "$W" -k "$kf" --stream <wm.fifo >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    exec 7>wm.fifo
    "$R" -k "$kf" --stream >/dev/null 2>/dev/null &
    r1=$!
    track_pid "$r1"
    wait_for 5 bash -c "awk -v k=$(ftok_key "$kf" 65) 'NR > 1 && \$1 == k && \$7 == 2' /proc/sysvipc/shm | grep -q ." ||
        fail "writer and reader never both attached"
    timeout 10 "$R" -k "$kf" --stream >/dev/null 2>wm.err
    rc=$?
    [ "$rc" = 1 ] || fail "a second reader exited $rc, expected 1"
    grep -q "already has a reader" wm.err || fail "a second reader said: $(cat wm.err)"
    kill -TERM "$w"
    exit_within "$w" 5 || fail "the writer ignored SIGTERM"
    exec 7>&-
    exit_within "$r1" 5 || fail "the first reader still runs after its writer stopped"
    nothing_on "$kf"
}

check_proj_id_and_mode() {
    local kf key w line
    kf=$(key_for pm 7)
    key=$(ftok_key "$kf" 7)
    "$W" -k "$kf" -i 7 --mode 640 --size 100 x >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 bash -c "awk -v k=$key 'NR > 1 && \$1 == k' /proc/sysvipc/shm | grep -q ." ||
        fail "no segment with the key of ftok(-k, 7)"
    line=$(awk -v k="$key" 'NR > 1 && $1 == k { print $3, $4 }' /proc/sysvipc/shm)
    [ "$line" = "640 164" ] || fail "--mode 640 --size 100: the segment has perms and size '$line', expected '640 164' (64-byte header)"
    wait_for 5 bash -c "awk -v k=$key 'NR > 1 && \$1 == k' /proc/sysvipc/sem | grep -q ." || fail "no semaphore set with the key of ftok(-k, 7)"
    line=$(modes_with_key "$key" | tr '\n' ' ')
    [ "$line" = "sem 640 shm 640 " ] || fail "--mode 640: the objects' modes are '$line', expected 640 for both"
    timeout 10 "$R" -k "$kf" --proj-id 7 >pm.out 2>/dev/null || fail "shm_reader --proj-id 7 exited $?"
    printf 'x\n' >pm.want
    same pm.out pm.want "shm_reader --proj-id 7"
    exit_within "$w" 5 && [ "$RC" = 0 ] || fail "the writer did not exit 0"
    nothing_on "$kf" 7
    # Without --mode, both objects are 0600: nobody else on the machine may read or post.
    # (And the other spelling of each flag: --proj-id for the writer, -i for the reader.)
    kf=$(key_for pmd 9)
    key=$(ftok_key "$kf" 9)
    "$W" -k "$kf" --proj-id 9 y >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 bash -c "awk -v k=$key 'NR > 1 && \$1 == k' /proc/sysvipc/sem | grep -q ." || fail "no semaphore set with the key of ftok(-k, 9) for --proj-id 9"
    wait_for 5 bash -c "awk -v k=$key 'NR > 1 && \$1 == k' /proc/sysvipc/shm | grep -q ." || fail "no segment with the key of ftok(-k, 9) for --proj-id 9"
    line=$(modes_with_key "$key" | tr '\n' ' ')
    [ "$line" = "sem 600 shm 600 " ] || fail "without --mode the objects' modes are '$line', expected 600 for both"
    timeout 10 "$R" -k "$kf" -i 9 >pm.out 2>/dev/null || fail "shm_reader -i 9 exited $?"
    printf 'y\n' >pm.want
    same pm.out pm.want "shm_reader -i 9"
    exit_within "$w" 5 && [ "$RC" = 0 ] || fail "the writer did not exit 0"
    nothing_on "$kf" 9
    # -m and -s, the short spellings.
    kf=$(key_for pms)
    key=$(ftok_key "$kf" 65)
    "$W" -k "$kf" -m 604 -s 10 hi >/dev/null 2>/dev/null &
    w=$!
    track_pid "$w"
    wait_for 5 writer_up "$kf" || fail "shm_writer -m 604 -s 10 made no segment and semaphore set"
    line="$(modes_with_key "$key" | tr '\n' ' ')$(awk -v k="$key" 'NR > 1 && $1 == k { print $4 }' /proc/sysvipc/shm)"
    [ "$line" = "sem 604 shm 604 74" ] || fail "-m 604 -s 10: modes and size '$line', expected 'sem 604 shm 604 74'"
    timeout 10 "$R" -k "$kf" >/dev/null 2>&1 || fail "shm_reader exited $?"
    exit_within "$w" 5 && [ "$RC" = 0 ] || fail "the writer did not exit 0"
    nothing_on "$kf"
}

check_usage() {
    local kf args rc prog
    kf=$(key_for us)
    for args in "shm_writer --bogus" "shm_writer --stream word" "shm_writer --size 0 x" \
        "shm_writer --stream --size 100" "shm_writer --slots 2 x" "shm_writer --slot-size 4096 x" \
        "shm_writer --stream --slots 0" "shm_writer --timeout x y" "shm_writer -i 0 x" \
        "shm_reader --bogus" "shm_reader --timeout x" "shm_reader word"; do
        prog=${args%% *}
        # shellcheck disable=SC2086
        timeout 10 "$BIN/$prog" -k "$kf" ${args#* } >us.out 2>us.err </dev/null
        rc=$?
        [ "$rc" = 2 ] || fail "$args exited $rc, expected 2"
        grep -q "^$prog: " us.err || fail "$args said on stderr: $(cat us.err)"
        [ ! -s us.out ] || fail "$args printed on stdout"
    done
    # A key path that does not exist is a runtime error naming ftok.
    timeout 10 "$R" -k "$IPCLAB_WORK/no/such/key" --timeout 1 >/dev/null 2>us.err
    rc=$?
    [ "$rc" = 1 ] || fail "shm_reader with a missing key path exited $rc, expected 1"
    grep -q "^shm_reader: ftok($IPCLAB_WORK/no/such/key, 65): No such file" us.err || fail "a missing key path said: $(cat us.err)"
    for prog in shm_writer shm_reader; do
        timeout 10 "$BIN/$prog" --help >us.out 2>us.err
        rc=$?
        [ "$rc" = 0 ] || fail "$prog --help exited $rc"
        grep -q "^Usage: $prog " us.out || fail "$prog --help printed no usage on stdout"
    done
    nothing_on "$kf"
}

check round-trip 2 check_round_trip
check reader-first 2 check_reader_first
check message-exact-bytes 3 check_exact_bytes
check size-boundaries 3 check_size_boundaries
check timeout 2 check_timeout
check stream-byte-exact 4 check_stream
check slow-peer-patience 2 check_slow_peer
check peer-death 3 check_peer_death
check signals-clean-up 4 check_signals
check reader-attaches-read-only 1 check_reader_read_only
check orphans-removed 2 check_orphans
check ipcrm-under-a-waiting-writer 2 check_ipcrm_under_writer
check wrong-mode-second-reader 2 check_wrong_mode_second_reader
check proj-id-and-mode 1 check_proj_id_and_mode
check usage 1 check_usage
check no-leaks 1 check_no_leaks
grade_finish
