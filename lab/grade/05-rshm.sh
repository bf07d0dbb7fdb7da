#!/usr/bin/env bash
# lab/grade/05-rshm.sh: grades RSHM (seed 000): rshm_server and client, three nodes on loopback.
#
#     lab/grade/05-rshm.sh [BINDIR]
#
# Uses only the documented command lines:
#     rshm_server --listen PORT --peer PORT...      (queue key 0x52530000 + PORT, gates 0x52470000 + PORT)
#     client --port P write KEY TEXT | read KEY [--follow] | rm KEY | ls
# and `client ls`'s first line "node ADDR peers ADDR up|down, ..." and its rows
# "rshmid key size owner attaches shmid version sent [dest]" (sent: bytes of the last update
# this node sent for the segment, per peer).
source "$(dirname "$0")/lib.sh"
grade_init "${1:-}" rshm_server client

# Three nodes' ports; each node's queue (0x52530000 + port) and change gates (a semaphore set,
# 0x52470000 + port) are tracked.
PA=$(free_port 0x52530000 0x52470000)
PB=$(free_port 0x52530000 0x52470000)
PC=$(free_port 0x52530000 0x52470000)

# start_node PORT PEER PEER: in the background, its stderr in $IPCLAB_WORK/PORT.log.
start_node() {
    "$BIN/rshm_server" --listen "$1" --peer "$2" --peer "$3" >/dev/null 2>>"$IPCLAB_WORK/$1.log" &
    track_pid $!
    echo $! >"$IPCLAB_WORK/$1.pid"
}
start_node "$PA" "$PB" "$PC"
start_node "$PB" "$PA" "$PC"
# C starts later, in check_late_joiner.

cl() { timeout 20 "$BIN/client" --port "$@"; }
all_up() { cl "$1" ls 2>/dev/null | head -n 1 | grep -q ' up' && ! cl "$1" ls | head -n 1 | grep -q down; }
# row PORT KEY: the ls row of KEY (hex, 8 digits) on node PORT.
row() { cl "$1" ls | awk -v k="$2" '$2 == k'; }
no_row() { [ -z "$(row "$1" "$2")" ]; }

check_start() {
    local p
    for p in $PA $PB $PC; do
        wait_for 10 all_up "$p" || fail "node $p never saw all its peers up: $(tail -n 2 "$IPCLAB_WORK/$p.log")"
    done
}

check_write_read() {
    local id got p
    id=$(cl "$PA" write 0x71 "hello from A") || fail "write on A failed"
    [ "$id" -gt 0 ] 2>/dev/null || fail "write printed '$id', expected a positive rshmid"
    for p in $PA $PB $PC; do
        got=$(cl "$p" read 0x71) || fail "read on $p failed"
        [ "$got" = "hello from A" ] || fail "node $p read '$got', expected 'hello from A'"
    done
    cl "$PC" write 0x71 "C replies" >/dev/null || fail "write on C failed"
    got=$(cl "$PA" read 0x71)
    [ "$got" = "C replies" ] || fail "node A read '$got' after C's write"
}

check_ref_counts() {
    local p n
    "$BIN/client" --port "$PB" read 0x71 --follow >"$IPCLAB_WORK/follow.out" 2>&1 &
    echo $! >"$IPCLAB_WORK/follow.pid"
    track_pid $!
    wait_for 10 grep -q . "$IPCLAB_WORK/follow.out" || fail "read --follow printed nothing"
    for p in $PA $PB $PC; do
        n=$(row "$p" 0x00000071 | awk '{print $5}')
        [ "$n" = 1 ] || fail "node $p shows $n attaches, expected 1 (a reader on B)"
    done
    cl "$PA" write 0x71 "news" >/dev/null
    wait_for 10 grep -qx news "$IPCLAB_WORK/follow.out" || fail "the follower on B did not see A's change"
}

check_removal() {
    local p
    cl "$PC" rm 0x71 || fail "rm on C (not the owner) failed"
    for p in $PA $PB $PC; do
        row "$p" 0x00000071 | grep -q 'dest$' || fail "node $p does not show the segment marked (dest)"
    done
    kill -TERM "$(cat "$IPCLAB_WORK/follow.pid")"
    for p in $PA $PB $PC; do
        wait_for 10 no_row "$p" 0x00000071 || fail "node $p kept the segment after the last detach"
    done
}

check_hello_merge() {
    local id pid got p
    pid=$(cat "$IPCLAB_WORK/$PC.pid")
    kill -TERM "$pid"
    wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "node C did not stop on SIGTERM"
    id=$(cl "$PA" write 0x72 "while C was away") || fail "write on A with C down failed"
    start_node "$PC" "$PA" "$PB"
    for p in $PA $PB $PC; do
        wait_for 10 all_up "$p" || fail "node $p never saw the restarted C up"
    done
    row "$PC" 0x00000072 | grep -q "^$id " || fail "C did not learn rshmid $id from HELLO"
    got=$(cl "$PC" read 0x72)
    [ "$got" = "while C was away" ] || fail "restarted C read '$got' before any new write, expected the current data"
    cl "$PA" write 0x72 "after C is back" >/dev/null
    got=$(cl "$PC" read 0x72)
    [ "$got" = "after C is back" ] || fail "C read '$got'"
}

check_diffs() {
    local sent v p
    cl "$PA" write 0x74 "hello" --size 1048576 >/dev/null || fail "write of a 1 MiB segment failed"
    cl "$PA" write 0x74 "hellp" >/dev/null || fail "second write failed"
    sent=$(row "$PA" 0x00000074 | awk '{print $8}')
    [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$sent" -le 64 ] ||
        fail "a 1-byte change in 1 MiB put '$sent' bytes on the wire, expected at most 64 (a diff)"
    for p in $PA $PB $PC; do
        v=$(row "$p" 0x00000074 | awk '{print $7}')
        [ "$v" = 2 ] || fail "node $p shows version '$v', expected 2"
    done
    [ "$(cl "$PB" read 0x74)" = hellp ] || fail "B did not get the 1-byte change"
}

check_late_joiner() {
    local got p
    # A and B run; C starts only after the write, and must read it without a new write.
    cl "$PA" write 0x75 "there before C" >/dev/null || fail "write on A failed"
    start_node "$PC" "$PA" "$PB"
    for p in $PA $PB $PC; do
        wait_for 10 all_up "$p" || fail "node $p never saw all its peers up"
    done
    got=$(cl "$PC" read 0x75) || fail "read on the late node C failed"
    [ "$got" = "there before C" ] || fail "the late node C read '$got' at once, expected 'there before C'"
}

check_restart_after_kill() {
    local pid got p
    pid=$(cat "$IPCLAB_WORK/$PC.pid")
    kill -KILL "$pid"
    wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "node C did not die on SIGKILL"
    cl "$PA" write 0x76 "written while C was dead" >/dev/null || fail "write on A with C dead failed"
    # SIGKILL leaves C's queue: remove it, as an administrator would, and restart C.
    objects_with_key $((0x52530000 + PC)) | while read -r kind id; do remove_object "$kind" "$id"; done
    start_node "$PC" "$PA" "$PB"
    for p in $PA $PB $PC; do
        wait_for 10 all_up "$p" || fail "node $p never saw the restarted C up"
    done
    got=$(cl "$PC" read 0x76)
    [ "$got" = "written while C was dead" ] || fail "restarted C read '$got'"
}

check_errors() {
    local out
    out=$("$BIN/client" --port 1 ls 2>&1) && fail "client on a port with no server succeeded"
    case "$out" in "client: no rshm_server on port 1 "*) ;; *) fail "unclear error: $out" ;; esac
    out=$(cl "$PA" read 0x7f 2>&1) && fail "reading an unknown key succeeded"
    case "$out" in "client: rshmget(key=0x0000007f): no segment"*) ;; *) fail "unclear error: $out" ;; esac
    out=$(cl "$PA" write 0x73 "too long for it" --size 4 2>&1) && fail "an oversized text was accepted"
    case "$out" in "client: text of 16 bytes"*) ;; *) fail "unclear error: $out" ;; esac
}

check_shutdown() {
    local p pid
    for p in $PA $PB $PC; do
        pid=$(cat "$IPCLAB_WORK/$p.pid")
        kill -TERM "$pid"
    done
    for p in $PA $PB $PC; do
        pid=$(cat "$IPCLAB_WORK/$p.pid")
        wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "node $p did not exit on SIGTERM"
        grep -q "leaving the group" "$IPCLAB_WORK/$p.log" || fail "node $p did not say it was leaving"
        [ -z "$(objects_with_key $((0x52530000 + p)))" ] || fail "node $p left its queue"
        [ -z "$(objects_with_key $((0x52470000 + p)))" ] || fail "node $p left its change gates"
    done
}

check late-joiner-reads-at-once check_late_joiner
check start check_start
check write-read check_write_read
check diffs-on-the-wire check_diffs
check ref-counts check_ref_counts
check removal-at-last-detach check_removal
check hello-merge check_hello_merge
check restart-after-sigkill check_restart_after_kill
check clear-errors check_errors
check shutdown check_shutdown
check no-leaks check_no_leaks
grade_finish
