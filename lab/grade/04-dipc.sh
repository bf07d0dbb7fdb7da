#!/usr/bin/env bash
# lab/grade/04-dipc.sh: grades dipc / dipcrm / dipc_client (seed 001, lab 04).
#
#     lab/grade/04-dipc.sh [BINDIR] [--json FILE]     # default: this project's release build
#
# One check per behaviour the lab asks for, using only the documented command lines:
#   dipc [--idle-timeout S] <mailboxes> <mailbox_kB> <port> <packet_kB>   (daemonizes; prints a line ending in the pid)
#   dipcrm <port>
#   dipc_client <port> [r N | w N TEXT]                 (and interactive on stdin)
# and the datagram itself, spoken through bash's /dev/tcp; replies are compared as exact bytes
# (files and cmp). Each check starts its own server on a free port, tracks the port's key
# (0x44500000 | port) and the server's pid, and stops it, so nothing outlives the grader.
#
# What is graded (behaviour -> check, points):
#   dipc daemonizes (its own session, stdio on /dev/null, cwd /): its line names
#     the port and the daemon's pid, which created a 0600 segment and a 0600
#     semaphore set under 0x4450PPPP                                          -> starts-as-daemon (2)
#   every row of the protocol table, byte for byte; after q (and after lost
#     framing) the server closes the connection                               -> protocol-rows (3)
#   mailboxes 0 and k-1 work, k is refused (k = 4 and k = 1)                  -> mailbox-boundaries (3)
#   the size limit is min(mailbox, packet), both ways: limit-1 and limit bytes
#     of any byte value are stored exactly, limit+1 is refused and discarded;
#     the line form too: lines of limit-1 and limit bytes fit, limit+1 not    -> size-limit (3)
#   one-shot and interactive clients print exactly the replies; a one-shot
#     write of several words stores them joined by single spaces             -> one-shot-and-interactive-client (2)
#   bad input with intact framing: err, the connection goes on               -> bad-input-keeps-serving (2)
#   ipcrm of its set under a running daemon: it says so in its log, exits,
#     and leaves nothing on its key                                          -> objects-removed-under-it (2)
#   lost framing: err, then the server closes                                 -> framing-loss-closes (2)
#   pipelined requests and byte-by-byte requests get the same replies         -> pipelined-equals-split (1)
#   a stalled client holds no lock; a disconnect mid-payload changes nothing  -> stalled-writer-holds-no-lock (2)
#   --idle-timeout closes a silent client, and only a silent one: a client
#     that talks more often (every 0.25 s, for longer than the timeout) stays -> idle-timeout (1)
#   a writer gets in under 16 looping readers of 8 MiB (their holds overlap);
#     a reader under 8 looping writers                                        -> writer-not-starved (2), reader-not-starved (2)
#   no read returns a torn message (two writers, distinct full-size patterns) -> no-torn-reads (3)
#   many clients at once each get their own replies                           -> many-clients (1)
#   a second dipc on a running port is refused                                -> second-server-refused (1)
#   SIGTERM to the daemon itself: clients closed, objects removed, it exits   -> sigterm-cleanup (3)
#   dipcrm stops the server, says what it removed; exit 1 when nothing       -> dipcrm (2)
#   dipcrm SIGKILLs a server that does not stop                               -> dipcrm-kills-a-stuck-server (1)
#   a SIGKILLed server's objects are recycled with a notice, or removed       -> orphans (2)
#   bad arguments exit 2 (each number just out of its range too), a port in
#     use exits 1, nothing left                                               -> bad-arguments (1)
#   nothing is left on any key the grader used                                -> no-leaks (1)
source "$(dirname "$0")/lib.sh"
grade_args "$@"
grade_init "$GRADE_BINDIR" dipc dipcrm dipc_client

D="$BIN/dipc"
RM="$BIN/dipcrm"
C="$BIN/dipc_client"

# port_key PORT: the documented key of a port, in decimal as /proc/sysvipc prints it.
port_key() { echo $((0x44500000 | $1)); }

# start_server [ARGS...]: a server (default 4 mailboxes of 1 kB, 1 kB packets) on a free port;
# sets PORT and PID.
start_server() {
    local out
    PORT=$(free_port 0x44500000)
    local args=("$@")
    [ ${#args[@]} -gt 0 ] || args=(4 1 PORT 1)
    args=("${args[@]/PORT/$PORT}")
    timeout 10 "$D" "${args[@]}" >"$IPCLAB_WORK/start.out" 2>"$IPCLAB_WORK/start.err" ||
        fail "dipc ${args[*]} exited $?: $(cat "$IPCLAB_WORK/start.err")"
    # The status line, on stderr or stdout: the grade is in its fields, not its stream.
    out=$(grep -h '^dipc: serving' "$IPCLAB_WORK/start.err" "$IPCLAB_WORK/start.out" | tail -n 1)
    PID=${out##* }
    [[ "$PID" =~ ^[0-9]+$ ]] || fail "dipc's line does not end with the daemon pid: '$out'"
    track_pid "$PID"
    START_LINE=$out
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
# Every conversation of the grader ends with q or with lost framing, after which the server
# must close: if it has not within 5 s, talk.open is left for server_closed to report.
talk() {
    rm -f "$IPCLAB_WORK/talk.open"
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    # shellcheck disable=SC2059
    printf "$1" >&3
    timeout 5 cat <&3
    [ $? != 124 ] || : >"$IPCLAB_WORK/talk.open"
    exec 3<&-
}

# server_closed WHAT: the last talk (or talk_file) saw the server close the connection.
server_closed() {
    [ ! -e "$IPCLAB_WORK/talk.open" ] || fail "the server did not close the connection within 5 s after $1"
}

# expect_talk FORMAT WANT: talk, and compare the bytes with printf WANT (files and cmp); the
# server must have closed the connection.
expect_talk() {
    talk "$1" >"$IPCLAB_WORK/talk.got"
    server_closed "'$1'"
    # shellcheck disable=SC2059
    printf "$2" >"$IPCLAB_WORK/talk.want"
    cmp -s "$IPCLAB_WORK/talk.got" "$IPCLAB_WORK/talk.want" ||
        fail "sent '$1': got [$(od -An -c "$IPCLAB_WORK/talk.got" | tr -s ' \n' ' ' | head -c 300)], expected [$(od -An -c "$IPCLAB_WORK/talk.want" | tr -s ' \n' ' ' | head -c 300)]"
}

# talk_file FILE: sends FILE's bytes on one connection (ending with q); the reply in talk.got.
# The server must close the connection after the q.
talk_file() {
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    cat "$1" >&3
    timeout 10 cat <&3 >"$IPCLAB_WORK/talk.got"
    local rc=$?
    exec 3<&-
    [ "$rc" != 124 ] || fail "the server did not close the connection within 10 s after a q"
}

# shm_field PORT COLUMN: a column of the port's segment in /proc/sysvipc/shm (3 perms, 5 cpid).
shm_field() { awk -v k="$(port_key "$1")" -v c="$2" 'NR > 1 && $1 == k { print $c }' /proc/sysvipc/shm; }

check_objects_removed_under_it() {
    local log sem
    start_server
    log=${START_LINE#*, log }
    log=${log%, daemon pid *}
    sem=$(objects_with_key "$(port_key "$PORT")" | awk '$1 == "sem" { print $2 }')
    [ -n "$sem" ] || fail "no semaphore set under the port's key"
    ipcrm -s "$sem" || fail "ipcrm -s $sem failed"
    wait_for 5 gone "$PID" || fail "the daemon still runs 5 s after its semaphore set was removed"
    grep -q "removed by someone else" "$log" 2>/dev/null ||
        fail "the daemon's log $log does not say its set was removed by someone else: $(head -c 300 "$log" 2>/dev/null)"
    [ -z "$(objects_with_key "$(port_key "$PORT")")" ] || fail "the daemon left objects on its key after its set was removed"
    rm -f "$log"
}

check_starts_as_daemon() {
    start_server
    [[ "$START_LINE" == "dipc: serving 4 mailboxes of 1 kB on 127.0.0.1:$PORT, log "*", daemon pid $PID" ]] ||
        fail "dipc's line: '$START_LINE'"
    alive "$PID" && [ "$(cat "/proc/$PID/comm" 2>/dev/null)" = dipc ] || fail "pid $PID is not a running dipc"
    local n sid
    n=$(objects_with_key "$(port_key "$PORT")" | wc -l)
    [ "$n" = 2 ] || fail "expected a segment and a semaphore set under key 0x4450xxxx, found $n objects"
    [ "$(shm_field "$PORT" 5)" = "$PID" ] || fail "the segment's creator is pid $(shm_field "$PORT" 5), not the daemon $PID"
    [ "$(shm_field "$PORT" 3)" = 600 ] || fail "the segment's mode is $(shm_field "$PORT" 3), expected 600"
    [ "$(modes_with_key "$(port_key "$PORT")" | tr '\n' ' ')" = "sem 600 shm 600 " ] ||
        fail "the objects' modes are '$(modes_with_key "$(port_key "$PORT")" | tr '\n' ' ')', expected 600 for the segment and the set"
    sid=$(sed 's/^.*) //' "/proc/$PID/stat" | awk '{print $4}')
    [ "$sid" = "$PID" ] || fail "the daemon is not a session leader (setsid): session $sid"
    local fd
    for fd in 0 1 2; do
        [ "$(readlink "/proc/$PID/fd/$fd")" = /dev/null ] || fail "the daemon's fd $fd is $(readlink "/proc/$PID/fd/$fd"), expected /dev/null"
    done
    [ "$(readlink "/proc/$PID/cwd")" = / ] || fail "the daemon's working directory is $(readlink "/proc/$PID/cwd"), expected /"
    stop_server
}

check_protocol_rows() {
    start_server
    expect_talk 'r 1\nw 1 5\nhellor 1\nw 2\ntyped line\nr 2\nq\n' \
        'ok 0\nok 5\nok 5\nhellook 10\nok 10\ntyped linebye\n'
    # The line form drops a \r\n; an empty write; a box keeps its last message; q ends it.
    expect_talk 'w 3\nnetcat line\r\nw 0 0\nr 0\nr 3\nq 3\nr 3\n' \
        'ok 11\nok 0\nok 0\nok 11\nnetcat linebye\n'
    expect_talk 'r 2\nr 1\nq\n' 'ok 10\ntyped lineok 5\nhellobye\n'
    stop_server
}

check_mailbox_boundaries() {
    start_server
    expect_talk 'w 3 4\nlastr 3\nw 0 5\nfirstr 0\nq\n' 'ok 4\nok 4\nlastok 5\nok 5\nfirstbye\n'
    expect_talk 'r 4\nw 4 1\nxr 3\nq\n' 'err no mailbox 4 (mailboxes are 0 to 3)\nerr no mailbox 4 (mailboxes are 0 to 3)\nok 4\nlastbye\n'
    stop_server
    start_server 1 1 PORT 1
    expect_talk 'w 0 3\nonew 1 1\nxr 1\nr 0\nq\n' 'ok 3\nerr no mailbox 1 (mailboxes are 0 to 0)\nerr no mailbox 1 (mailboxes are 0 to 0)\nok 3\nonebye\n'
    stop_server
}

# size_edges LIMIT: limit-1 and limit bytes of every byte value go through box 0 exactly;
# limit+1 is refused, discarded, and the box keeps the last good message.
size_edges() {
    local n=$1 i
    for ((i = 0; i < 256; i++)); do printf "\\$(printf '%03o' $(((i * 7) % 256)))"; done >"$IPCLAB_WORK/bytes"
    for _ in $(seq $((n / 256 + 2))); do cat "$IPCLAB_WORK/bytes"; done >"$IPCLAB_WORK/pattern"
    for len in $((n - 1)) "$n"; do
        {
            printf 'w 0 %d\n' "$len"
            head -c "$len" "$IPCLAB_WORK/pattern"
            printf 'r 0\nq\n'
        } >"$IPCLAB_WORK/req"
        talk_file "$IPCLAB_WORK/req"
        {
            printf 'ok %d\nok %d\n' "$len" "$len"
            head -c "$len" "$IPCLAB_WORK/pattern"
            printf 'bye\n'
        } >"$IPCLAB_WORK/want"
        cmp -s "$IPCLAB_WORK/talk.got" "$IPCLAB_WORK/want" ||
            fail "a $len-byte binary message (limit $n) came back as $(head -c 40 "$IPCLAB_WORK/talk.got" | od -An -c | tr -s ' \n' ' ')... ($(stat -c %s "$IPCLAB_WORK/talk.got") bytes, expected $(stat -c %s "$IPCLAB_WORK/want"))"
    done
    {
        printf 'w 0 %d\n' $((n + 1))
        head -c $((n + 1)) /dev/zero | tr '\0' z
        printf 'r 0\nq\n'
    } >"$IPCLAB_WORK/req"
    talk_file "$IPCLAB_WORK/req"
    {
        printf 'err message of %d bytes is over the limit of %d\nok %d\n' $((n + 1)) "$n" "$n"
        head -c "$n" "$IPCLAB_WORK/pattern"
        printf 'bye\n'
    } >"$IPCLAB_WORK/want"
    cmp -s "$IPCLAB_WORK/talk.got" "$IPCLAB_WORK/want" ||
        fail "$((n + 1)) bytes (limit $n): got [$(head -c 80 "$IPCLAB_WORK/talk.got" | od -An -c | tr -s ' \n' ' ')], expected an err line, then the box unchanged"
    # The line form has the same limit: its line, without the newline, is the message.
    head -c $((n + 1)) /dev/zero | tr '\0' L >"$IPCLAB_WORK/line"
    for len in $((n - 1)) "$n"; do
        { printf 'w 1\n'; head -c "$len" "$IPCLAB_WORK/line"; printf '\nr 1\nq\n'; } >"$IPCLAB_WORK/req"
        talk_file "$IPCLAB_WORK/req"
        { printf 'ok %d\nok %d\n' "$len" "$len"; head -c "$len" "$IPCLAB_WORK/line"; printf 'bye\n'; } >"$IPCLAB_WORK/want"
        cmp -s "$IPCLAB_WORK/talk.got" "$IPCLAB_WORK/want" ||
            fail "a line of $len bytes (limit $n) with 'w 1': got [$(head -c 40 "$IPCLAB_WORK/talk.got" | od -An -c | tr -s ' \n' ' ')]... ($(stat -c %s "$IPCLAB_WORK/talk.got") bytes, expected $(stat -c %s "$IPCLAB_WORK/want"))"
    done
    { printf 'w 1\n'; cat "$IPCLAB_WORK/line"; printf '\nr 1\nq\n'; } >"$IPCLAB_WORK/req"
    talk_file "$IPCLAB_WORK/req"
    { printf 'err message line longer than %d bytes\nok %d\n' "$n" "$n"; head -c "$n" "$IPCLAB_WORK/line"; printf 'bye\n'; } >"$IPCLAB_WORK/want"
    cmp -s "$IPCLAB_WORK/talk.got" "$IPCLAB_WORK/want" ||
        fail "a line of $((n + 1)) bytes (limit $n): got [$(head -c 80 "$IPCLAB_WORK/talk.got" | od -An -c | tr -s ' \n' ' ')], expected an err line, then the box unchanged"
}

check_size_limit() {
    start_server
    size_edges 1024
    stop_server
    # The limit is the smaller of the two sizes, whichever it is.
    start_server 2 2 PORT 1
    size_edges 1024
    stop_server
    start_server 2 1 PORT 3
    size_edges 1024
    stop_server
    start_server 2 3 PORT 2
    size_edges 2048
    stop_server
}

check_one_shot_client() {
    start_server
    "$C" "$PORT" w 1 "text" >"$IPCLAB_WORK/c.out" || fail "dipc_client w exited $?"
    printf 'ok 4\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "dipc_client $PORT w 1 text printed '$(cat "$IPCLAB_WORK/c.out")', expected 'ok 4'"
    "$C" "$PORT" r 1 >"$IPCLAB_WORK/c.out" || fail "dipc_client r exited $?"
    printf 'text\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "dipc_client $PORT r 1 printed '$(cat "$IPCLAB_WORK/c.out")', expected 'text'"
    "$C" "$PORT" w 0 two words >"$IPCLAB_WORK/c.out" || fail "dipc_client w 0 two words exited $?"
    printf 'ok 9\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "dipc_client $PORT w 0 two words printed '$(cat "$IPCLAB_WORK/c.out")', expected 'ok 9'"
    "$C" "$PORT" r 0 >"$IPCLAB_WORK/c.out" || fail "dipc_client r exited $?"
    printf 'two words\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "after 'w 0 two words', dipc_client $PORT r 0 printed '$(cat "$IPCLAB_WORK/c.out")', expected 'two words'"
    "$C" "$PORT" r 2 >"$IPCLAB_WORK/c.out" || fail "dipc_client r of an empty box exited $?"
    printf '\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "dipc_client r of an empty box printed '$(cat "$IPCLAB_WORK/c.out")'"
    printf 'w 3 hi there\nr 3\nq\n' | "$C" "$PORT" >"$IPCLAB_WORK/c.out" || fail "interactive client exited $?"
    printf 'ok 8\nok 8\nhi there\nbye\n' >"$IPCLAB_WORK/c.want"
    cmp -s "$IPCLAB_WORK/c.out" "$IPCLAB_WORK/c.want" || fail "interactive client printed '$(cat "$IPCLAB_WORK/c.out")'"
    local rc=0
    "$C" "$PORT" r 9 >/dev/null 2>"$IPCLAB_WORK/c.err" || rc=$?
    [ "$rc" = 1 ] || fail "dipc_client r 9 on 4 boxes exited $rc, expected 1"
    grep -q "no mailbox 9" "$IPCLAB_WORK/c.err" || fail "dipc_client r 9 said: $(cat "$IPCLAB_WORK/c.err")"
    stop_server
}

check_bad_input_keeps_serving() {
    start_server
    expect_talk 'r 4\nr x\nw 9 3\nabcw y\nline\nr\n\nw\nr 3\nq\n' \
        'err no mailbox 4 (mailboxes are 0 to 3)\nerr bad mailbox '"'x'"' (mailboxes are 0 to 3)\nerr no mailbox 9 (mailboxes are 0 to 3)\nerr bad mailbox '"'y'"' (mailboxes are 0 to 3)\nerr usage: r <mailbox>
err usage: w <mailbox> [<length>]\nok 0\nbye\n'
    local got
    got=$(talk 'foo\nw 0 2000\n'"$(head -c 2000 /dev/zero | tr '\0' z)"'r 0\nq\n')
    server_closed "q"
    [ "$(grep -c '^err ' <<<"$got")" = 2 ] || fail "expected 2 err replies, got: $got"
    grep -q '^ok 0$' <<<"$got" || fail "no 'ok 0' after the bad requests: $got"
    [ "$(tail -n 1 <<<"$got")" = bye ] || fail "the connection did not survive the bad requests"
    stop_server
}

check_framing_loss_closes() {
    start_server
    local got
    got=$(talk 'w 1 abc\nr 1\n')
    server_closed "a non-numeric length"
    [[ "$got" == err* ]] || fail "a non-numeric length got '$got', expected err and a close"
    [ "$(wc -l <<<"$got")" = 1 ] || fail "the server answered after losing the framing: $got"
    got=$(talk "$(head -c 5000 /dev/zero | tr '\0' r)\n")
    server_closed "a 5000-byte header line"
    [[ "$got" == err* ]] || fail "a 5000-byte header line got '$got', expected err and a close"
    expect_talk 'r 1\nq\n' 'ok 0\nbye\n'
    stop_server
}

check_pipelined_equals_split() {
    start_server
    local whole split
    whole=$(talk 'w 0 3\nabcr 0\nx\nq\n' | od -An -c)
    server_closed "q"
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

check_idle_timeout() {
    start_server --idle-timeout 1 4 1 PORT 1
    local start
    start=$SECONDS
    exec 4<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'w 2 100\nabc' >&4
    timeout 10 cat <&4 >"$IPCLAB_WORK/idle.got"
    exec 4<&-
    printf 'err idle timeout; closing\n' >"$IPCLAB_WORK/idle.want"
    cmp -s "$IPCLAB_WORK/idle.got" "$IPCLAB_WORK/idle.want" || fail "a silent client got '$(cat "$IPCLAB_WORK/idle.got")', expected 'err idle timeout; closing'"
    ((SECONDS - start <= 6)) || fail "--idle-timeout 1 closed the client after $((SECONDS - start)) s"
    expect_talk 'r 2\nq\n' 'ok 0\nbye\n'
    stop_server
    # A client that sends a request every 0.25 s for 5 s is never idle for 3 s (--idle-timeout
    # counts silence, not time since connecting). The margin is wide, so that a loaded machine
    # that delays the client's sends does not look like an idle client. (If the server closes it
    # anyway, a write gets EPIPE, not a SIGPIPE that would end the check unexplained.)
    start_server --idle-timeout 3 4 1 PORT 1
    trap '' PIPE
    exec 4<>"/dev/tcp/127.0.0.1/$PORT"
    local i
    for ((i = 0; i < 20; i++)); do
        printf 'r 2\n' >&4 2>/dev/null || break
        sleep 0.25
    done
    printf 'q\n' >&4 2>/dev/null
    timeout 10 cat <&4 >"$IPCLAB_WORK/idle.got"
    exec 4<&-
    { for ((i = 0; i < 20; i++)); do printf 'ok 0\n'; done; printf 'bye\n'; } >"$IPCLAB_WORK/idle.want"
    cmp -s "$IPCLAB_WORK/idle.got" "$IPCLAB_WORK/idle.want" ||
        fail "--idle-timeout 3: a client talking every 0.25 s for 5 s got [$(tr '\n' '|' <"$IPCLAB_WORK/idle.got")], expected 20 'ok 0' and 'bye'"
    stop_server
}

# writes_file FILE LETTER LEN COUNT: a request file of COUNT writes of LEN times LETTER to box 0.
writes_file() {
    local i
    for ((i = 0; i < $4; i++)); do
        printf 'w 0 %d\n' "$3"
        head -c "$3" /dev/zero | tr '\0' "$2"
    done >"$1"
}

# Torn reads: two patterns of distinct length and byte, 4 MiB of x and 4000000 y's, so that a
# read mixing two writes shows two bytes or a length that does not match its byte. 4 MiB copies
# take long enough that a write overlaps a read often, if the lock lets it.
TORN_X=4194304
TORN_Y=4000000

check_no_torn_reads() {
    start_server 1 4096 PORT 4096
    local i w f
    writes_file "$IPCLAB_WORK/wx" x $TORN_X 20
    writes_file "$IPCLAB_WORK/wy" y $TORN_Y 20
    # One whole message first, so that no read finds the box empty.
    { head -c $((TORN_X + 12)) "$IPCLAB_WORK/wx"; printf 'q\n'; } >"$IPCLAB_WORK/req"
    talk_file "$IPCLAB_WORK/req"
    W_PIDS=
    R_PIDS=
    for i in 1 2; do
        for f in wx wy; do
            bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; cat '$IPCLAB_WORK/$f' >&3; exec 3>&-" >/dev/null 2>&1 &
            track_pid $!
            W_PIDS+=" $!"
        done
    done
    for i in 1 2 3 4 5 6; do
        (
            exec 3<>"/dev/tcp/127.0.0.1/$PORT"
            for ((j = 0; j < 50; j++)); do printf 'r 0\n'; done >&3
            printf 'q\n' >&3
            # Runs of one byte squeezed to one: a whole message becomes one letter, a torn one
            # two or more ("xy"), and the check stays fast.
            timeout 20 cat <&3 | tr -s xy >"$IPCLAB_WORK/torn.$i"
        ) &
        track_pid $!
        R_PIDS+=" $!"
    done
    for w in $R_PIDS; do exit_within "$w" 25 || fail "a reader did not finish"; done
    for i in 1 2 3 4 5 6; do
        # Each reply: "ok LEN\n" then LEN bytes, all x (TORN_X) or all y (TORN_Y).
        LC_ALL=C awk -v RS='ok ' -v X=$TORN_X -v Y=$TORN_Y 'NR > 1 {
                sub(/bye\n$/, "")
                n = index($0, "\n"); len = substr($0, 1, n - 1) + 0; data = substr($0, n + 1)
                if (data != "x" && data != "y") { print "a torn message: " len " bytes reading [" substr(data, 1, 20) "] once runs are squeezed"; bad = 1; exit 1 }
                if (!((data == "x" && len == X) || (data == "y" && len == Y))) { print "length " len " with pattern " data; bad = 1; exit 1 }
                seen++
            } END { if (bad) exit 1; if (!seen) { print "no message read"; exit 1 } }' "$IPCLAB_WORK/torn.$i" >"$IPCLAB_WORK/torn.why" ||
            fail "reader $i: $(cat "$IPCLAB_WORK/torn.why"); the replies, runs squeezed: [$(head -c 60 "$IPCLAB_WORK/torn.$i" | tr '\n' '|')]"
    done
    # shellcheck disable=SC2086
    kill $W_PIDS 2>/dev/null
    stop_server
}

check_many_clients() {
    start_server
    local i
    for ((i = 0; i < 12; i++)); do
        (
            for ((j = 0; j < 20; j++)); do
                printf 'w %d c%d-%d\n' $((i % 4)) "$i" "$j"
            done
            printf 'q\n'
        ) | timeout 20 "$C" "$PORT" >"$IPCLAB_WORK/many.$i" 2>&1 &
    done
    wait
    for ((i = 0; i < 12; i++)); do
        [ "$(grep -c '^ok ' "$IPCLAB_WORK/many.$i")" = 20 ] || fail "client $i got $(grep -c '^ok ' "$IPCLAB_WORK/many.$i") of 20 ok replies: $(head -n 3 "$IPCLAB_WORK/many.$i")"
        [ "$(tail -n 1 "$IPCLAB_WORK/many.$i")" = bye ] || fail "client $i did not get bye"
    done
    stop_server
}

check_sigterm_cleanup() {
    start_server
    local key got
    key=$(port_key "$PORT")
    exec 5<>"/dev/tcp/127.0.0.1/$PORT"
    exec 6<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'w 0 50\nabc' >&6
    printf 'r 0\n' >&5
    sleep 0.3
    kill -TERM "$PID"
    wait_for 5 gone "$PID" || fail "the daemon still runs 5 s after SIGTERM"
    got=$(timeout 5 cat <&5; echo "rc=$?")
    [ "$got" = "$(printf 'ok 0\nrc=0')" ] || fail "an idle client was not closed cleanly after SIGTERM: '$got'"
    timeout 5 cat <&6 >/dev/null || fail "a stalled client was not closed after SIGTERM"
    exec 5<&- 6<&-
    [ -z "$(objects_with_key "$key")" ] || fail "objects left after SIGTERM to the daemon: $(objects_with_key "$key" | tr '\n' ' ')"
    start_server
    kill -INT "$PID"
    wait_for 5 gone "$PID" || fail "the daemon still runs 5 s after SIGINT"
    nothing_left
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
    # Readers whose holds overlap for the whole test: an 8 MiB box, so that each read copies
    # 8 MiB under the read lock, and 16 looping readers on 2 cores, so that some reader is
    # always inside (running or preempted in its copy) and the reader count never drops to 0.
    # A naive lock (the writer waits for zero readers) then never lets the writer in; the
    # turnstile lets it in after the readers already inside.
    start_server 1 8192 PORT 8192
    LOOPERS=
    { printf 'w 0 8388608\n'; head -c 8388608 /dev/zero | tr '\0' m; printf 'q\n'; } >"$IPCLAB_WORK/req"
    talk_file "$IPCLAB_WORK/req"
    loop_clients 16 'r 0'
    sleep 1
    local i
    for i in 1 2 3; do
        timeout 5 "$C" "$PORT" w 0 "writer $i" >/dev/null || fail "a writer waited over 5 s behind 16 looping readers"
    done
    # shellcheck disable=SC2086
    kill $LOOPERS 2>/dev/null
    stop_server
}

check_reader_not_starved() {
    start_server
    LOOPERS=
    loop_clients 8 'w 0 a message from a looping writer'
    sleep 0.5
    local i
    for i in 1 2 3; do
        timeout 5 "$C" "$PORT" r 0 >"$IPCLAB_WORK/rns" || fail "a reader waited over 5 s behind 8 looping writers"
        grep -qx 'a message from a looping writer' "$IPCLAB_WORK/rns" || fail "the reader read '$(cat "$IPCLAB_WORK/rns")'"
    done
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
    local out rc=0 shmid k
    shmid=$(shm_field "$PORT" 2)
    k=$(printf '0x%08x' "$(port_key "$PORT")")
    out=$(timeout 15 "$RM" "$PORT") || fail "dipcrm exited $?"
    grep -qx "sent SIGTERM to dipc server pid $PID (port $PORT)" <<<"$out" || fail "dipcrm did not say it signalled pid $PID: $out"
    grep -qx "removed shared memory segment key $k id $shmid (by the server)" <<<"$out" || fail "dipcrm did not name the segment $shmid: $out"
    grep -q "^removed semaphore set key $k id [0-9]* (by the server)$" <<<"$out" || fail "dipcrm did not name the semaphore set: $out"
    nothing_left
    gone "$PID" || fail "the server still runs after dipcrm"
    timeout 15 "$RM" "$PORT" >/dev/null 2>"$IPCLAB_WORK/rm.err" || rc=$?
    [ "$rc" = 1 ] || fail "dipcrm with nothing for the port exited $rc, expected 1"
    grep -q "^dipcrm: no dipc server and no objects for port $PORT" "$IPCLAB_WORK/rm.err" || fail "dipcrm with nothing said: $(cat "$IPCLAB_WORK/rm.err")"
}

check_dipcrm_kills_stuck() {
    start_server
    freeze "$PID" || fail "the server did not stop on SIGSTOP"
    local out
    out=$(timeout 20 "$RM" "$PORT") || fail "dipcrm on a stopped server exited $?"
    grep -qx "pid $PID did not exit within 5 s; sent SIGKILL" <<<"$out" || fail "dipcrm did not SIGKILL the stopped server: $out"
    wait_for 3 gone "$PID" || fail "the stopped server still exists after dipcrm"
    nothing_left
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
    # Each number at the edge of its range: mailboxes, mailbox_kB, port, packet_kB, the timeout.
    for args in "0 1 $PORT 1" "x 1 $PORT 1" "4 1 $PORT" "100000 1 $PORT 1" "4 0 $PORT 1" \
        "4 1 $PORT 0" "4 1 0 1" "4 1 65536 1" "4 1 $PORT 65537" "--idle-timeout 0 4 1 $PORT 1"; do
        rc=0
        # shellcheck disable=SC2086
        timeout 10 "$D" $args >/dev/null 2>&1 || rc=$?
        # A daemon that should not have started is stopped before the check fails.
        [ "$rc" != 0 ] || timeout 15 "$RM" "$PORT" >/dev/null 2>&1
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

check starts-as-daemon 2 check_starts_as_daemon
check protocol-rows 3 check_protocol_rows
check mailbox-boundaries 3 check_mailbox_boundaries
check size-limit 3 check_size_limit
check one-shot-and-interactive-client 2 check_one_shot_client
check bad-input-keeps-serving 2 check_bad_input_keeps_serving
check objects-removed-under-it 2 check_objects_removed_under_it
check framing-loss-closes 2 check_framing_loss_closes
check pipelined-equals-split 1 check_pipelined_equals_split
check stalled-writer-holds-no-lock 2 check_stalled_writer_holds_no_lock
check idle-timeout 1 check_idle_timeout
check writer-not-starved 2 check_writer_not_starved
check reader-not-starved 2 check_reader_not_starved
check no-torn-reads 3 check_no_torn_reads
check many-clients 1 check_many_clients
check second-server-refused 1 check_second_server_refused
check sigterm-cleanup 3 check_sigterm_cleanup
check dipcrm 2 check_dipcrm_reports_and_exits_1_when_nothing
check dipcrm-kills-a-stuck-server 1 check_dipcrm_kills_stuck
check orphans 2 check_orphans_recycled_and_removed
check bad-arguments 1 check_bad_arguments
check no-leaks 1 check_no_leaks
grade_finish
