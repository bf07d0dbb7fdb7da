#!/usr/bin/env bash
# lab/grade/04-dipc.sh: grades dipc / dipcrm / dipc_client (seed 001, lab 04).
#
#     lab/grade/04-dipc.sh [BINDIR]     # default: this project's release build
#
# One check per behaviour the lab asks for, using only the documented command lines:
#   dipc <mailboxes> <mailbox_kB> <port> <packet_kB>   (daemonizes; prints a line ending in the pid)
#   dipcrm <port>
#   dipc_client <port> [r N | w N TEXT]                 (and interactive on stdin)
# and the datagram itself, spoken through bash's /dev/tcp. Each check starts its own server on
# a free port, tracks the port's key (0x44500000 | port) and the server's pid, and stops it with
# dipcrm, so nothing outlives the grader.
source "$(dirname "$0")/lib.sh"
grade_init "${1:-}" dipc dipcrm dipc_client

D="$BIN/dipc"
RM="$BIN/dipcrm"
C="$BIN/dipc_client"

# port_key PORT: the documented key of a port, in decimal as /proc/sysvipc prints it.
port_key() { echo $((0x44500000 | $1)); }

# start_server: a server with 4 mailboxes of 1 kB on a free port; sets PORT and PID.
start_server() {
    local out
    PORT=$(free_port 0x44500000)
    out=$(timeout 10 "$D" 4 1 "$PORT" 1) || fail "dipc 4 1 $PORT 1 exited $?"
    PID=${out##* }
    [[ "$PID" =~ ^[0-9]+$ ]] || fail "dipc's line does not end with the daemon pid: '$out'"
    track_pid "$PID"
}

# stop_server: dipcrm, which must succeed and leave neither process nor object.
stop_server() {
    timeout 15 "$RM" "$PORT" >/dev/null || fail "dipcrm $PORT exited $?"
    wait_for 3 gone "$PID" || fail "server pid $PID still running after dipcrm"
    nothing_left
}

# alive PID: the process runs. A zombie (exited, not yet reaped by its parent, which for a
# daemon is init and may be slow) does not count.
alive() {
    local st
    st=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}
gone() { ! alive "$1"; }

nothing_left() {
    local left
    left=$(objects_with_key "$(port_key "$PORT")" | tr '\n' ' ')
    [ -z "$left" ] || fail "objects left behind for port $PORT: $left"
}

# talk FORMAT: sends printf FORMAT on one connection; prints all the server sent until it closed.
talk() {
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    # shellcheck disable=SC2059
    printf "$1" >&3
    timeout 5 cat <&3
    exec 3<&-
}

# expect_talk FORMAT WANT: talk, and compare the bytes with printf WANT.
expect_talk() {
    local got want
    got=$(talk "$1" | od -An -c | tr -s ' \n' ' ')
    # shellcheck disable=SC2059
    want=$(printf "$2" | od -An -c | tr -s ' \n' ' ')
    [ "$got" = "$want" ] || fail "sent '$1': got [$got], expected [$want]"
}

check_starts_as_daemon() {
    start_server
    alive "$PID" && [ "$(cat "/proc/$PID/comm" 2>/dev/null)" = dipc ] || fail "pid $PID is not a running dipc"
    local n
    n=$(objects_with_key "$(port_key "$PORT")" | wc -l)
    [ "$n" = 2 ] || fail "expected a segment and a semaphore set under key 0x4450xxxx, found $n objects"
    stop_server
}

check_protocol_rows() {
    start_server
    expect_talk 'r 1\nw 1 5\nhellor 1\nw 2\ntyped line\nr 2\nq\n' \
        'ok 0\nok 5\nok 5\nhellook 10\nok 10\ntyped linebye\n'
    stop_server
}

check_one_shot_client() {
    start_server
    local out
    out=$("$C" "$PORT" w 1 "text") || fail "dipc_client w exited $?"
    [ "$out" = "ok 4" ] || fail "dipc_client $PORT w 1 text printed '$out', expected 'ok 4'"
    out=$("$C" "$PORT" r 1) || fail "dipc_client r exited $?"
    [ "$out" = "text" ] || fail "dipc_client $PORT r 1 printed '$out', expected 'text'"
    out=$(printf 'w 3 hi there\nr 3\nq\n' | "$C" "$PORT") || fail "interactive client exited $?"
    [ "$out" = "$(printf 'ok 8\nok 8\nhi there\nbye')" ] || fail "interactive client printed '$out'"
    stop_server
}

check_bad_input_keeps_serving() {
    start_server
    # Bad box, out of range or not a number; unknown command; oversize (discarded): connection
    # stays usable, and the last request is answered.
    local got
    got=$(talk 'r 4\nr x\nfoo\nw 9 2\nabw 0 2000\n'"$(head -c 2000 /dev/zero | tr '\0' z)"'r 0\nq\n')
    [ "$(grep -c '^err ' <<<"$got")" = 5 ] || fail "expected 5 err replies, got: $got"
    grep -q '^ok 0$' <<<"$got" || fail "no 'ok 0' after the bad requests: $got"
    [ "$(tail -n 1 <<<"$got")" = bye ] || fail "the connection did not survive the bad requests"
    stop_server
}

check_framing_loss_closes() {
    start_server
    local got
    got=$(talk 'w 1 abc\nr 1\n')
    [[ "$got" == err* ]] || fail "a non-numeric length got '$got', expected err and a close"
    [ "$(wc -l <<<"$got")" = 1 ] || fail "the server answered after losing the framing: $got"
    got=$(talk "$(head -c 5000 /dev/zero | tr '\0' r)\n")
    [[ "$got" == err* ]] || fail "a 5000-byte header line got '$got', expected err and a close"
    expect_talk 'r 1\nq\n' 'ok 0\nbye\n'
    stop_server
}

check_pipelined_equals_split() {
    start_server
    local whole split
    whole=$(talk 'w 0 3\nabcr 0\nx\nq\n' | od -An -c)
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    local ch s='w 0 3\nabcr 0\nx\nq\n' i
    s=$(printf "$s"; echo .)
    s=${s%.}
    for ((i = 0; i < ${#s}; i++)); do
        ch=${s:i:1}
        printf '%s' "$ch" >&3
        sleep 0.01
    done
    split=$(timeout 5 cat <&3 | od -An -c)
    exec 3<&-
    [ "$whole" = "$split" ] || fail "pipelined [$whole] differs from byte by byte [$split]"
    stop_server
}

check_stalled_writer_holds_no_lock() {
    start_server
    "$C" "$PORT" w 1 old >/dev/null || fail "write failed"
    exec 4<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'w 1 100\n0123456789' >&4
    sleep 0.2
    local out
    out=$(timeout 3 "$C" "$PORT" w 1 new) || fail "a write waited behind a stalled client"
    out=$(timeout 3 "$C" "$PORT" r 1) || fail "a read waited behind a stalled client"
    [ "$out" = new ] || fail "read '$out', expected 'new'"
    exec 4<&-
    sleep 0.2
    out=$(timeout 3 "$C" "$PORT" r 1)
    [ "$out" = new ] || fail "a disconnect mid-payload changed the box to '$out'"
    stop_server
}

# loop_clients N CMD: N interactive clients each fed CMD for ever (their pids tracked).
loop_clients() {
    local i
    for ((i = 0; i < $1; i++)); do
        yes "$2" | "$C" "$PORT" >/dev/null 2>&1 &
        track_pid $!
        LOOPERS+=" $!"
    done
}

check_writer_not_starved() {
    start_server
    LOOPERS=
    "$C" "$PORT" w 0 "$(head -c 1000 /dev/zero | tr '\0' m)" >/dev/null
    loop_clients 8 'r 0'
    sleep 0.5
    timeout 5 "$C" "$PORT" w 0 writer >/dev/null || fail "a writer waited over 5 s behind 8 readers"
    # shellcheck disable=SC2086
    kill $LOOPERS 2>/dev/null
    stop_server
}

check_reader_not_starved() {
    start_server
    LOOPERS=
    loop_clients 8 'w 0 a message from a looping writer'
    sleep 0.5
    timeout 5 "$C" "$PORT" r 0 >/dev/null || fail "a reader waited over 5 s behind 8 writers"
    # shellcheck disable=SC2086
    kill $LOOPERS 2>/dev/null
    stop_server
}

check_second_server_refused() {
    start_server
    local err rc=0
    err=$(timeout 10 "$D" 4 1 "$PORT" 1 2>&1 >/dev/null) || rc=$?
    [ "$rc" = 1 ] || fail "a second dipc on port $PORT exited $rc, expected 1"
    grep -qi "already running" <<<"$err" || fail "the second dipc said '$err'"
    expect_talk 'r 0\nq\n' 'ok 0\nbye\n'
    stop_server
}

check_dipcrm_reports_and_exits_1_when_nothing() {
    start_server
    local out rc=0
    out=$(timeout 15 "$RM" "$PORT") || fail "dipcrm exited $?"
    grep -q "removed" <<<"$out" || fail "dipcrm did not say what it removed: $out"
    nothing_left
    timeout 15 "$RM" "$PORT" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "dipcrm with nothing for the port exited $rc, expected 1"
}

check_orphans_recycled_and_removed() {
    start_server
    kill -9 "$PID"
    sleep 0.2
    [ -n "$(objects_with_key "$(port_key "$PORT")")" ] || fail "no objects after kill -9 (fine, but unexpected)"
    local err out
    out=$(timeout 10 "$D" 4 1 "$PORT" 1 2>"$IPCLAB_WORK/recycle.err") || fail "dipc over orphans exited $?"
    err=$(cat "$IPCLAB_WORK/recycle.err")
    grep -qi "orphan" <<<"$err" || fail "dipc recycled orphans without a notice (stderr: '$err')"
    PID=${out##* }
    track_pid "$PID"
    kill -9 "$PID"
    sleep 0.2
    out=$(timeout 15 "$RM" "$PORT") || fail "dipcrm on orphans exited $?"
    grep -q "removed" <<<"$out" || fail "dipcrm did not say what it removed: $out"
    nothing_left
}

check_bad_arguments() {
    local rc
    PORT=$(free_port 0x44500000)
    for args in "0 1 $PORT 1" "x 1 $PORT 1" "4 1 $PORT" "100000 1 $PORT 1"; do
        rc=0
        # shellcheck disable=SC2086
        timeout 10 "$D" $args >/dev/null 2>&1 || rc=$?
        [ "$rc" = 2 ] || fail "dipc $args exited $rc, expected 2"
    done
    nothing_left
    # A port in use (bash cannot listen, so a first dipc holds it): the second must exit 1.
    start_server
    rc=0
    timeout 10 "$D" 4 1 "$PORT" 1 >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "dipc on a port in use exited $rc, expected 1"
    stop_server
}

check grade-starts-as-daemon check_starts_as_daemon
check protocol-rows check_protocol_rows
check one-shot-and-interactive-client check_one_shot_client
check bad-input-keeps-serving check_bad_input_keeps_serving
check framing-loss-closes check_framing_loss_closes
check pipelined-equals-split check_pipelined_equals_split
check stalled-writer-holds-no-lock check_stalled_writer_holds_no_lock
check writer-not-starved check_writer_not_starved
check reader-not-starved check_reader_not_starved
check second-server-refused check_second_server_refused
check dipcrm check_dipcrm_reports_and_exits_1_when_nothing
check orphans check_orphans_recycled_and_removed
check bad-arguments check_bad_arguments
check no-leaks check_no_leaks
grade_finish
