#!/usr/bin/env bash
# lab/grade/05-rshm.sh: grades RSHM (seed 000): rshm_server and client, three nodes on loopback.
#
#     lab/grade/05-rshm.sh [BINDIR] [--json FILE]
#
# Uses only the documented command lines:
#     rshm_server --listen PORT --peer PORT... --secret FILE
#         (queue key 0x52530000 + PORT, gates 0x52470000 + PORT, alive set 0x52410000 + PORT)
#     client --port P write KEY TEXT [--size N] | read KEY [--follow] | rm KEY | ls
# and `client ls`'s first line "node ADDR peers ADDR up|down, ..." and its rows
# "rshmid key size owner attaches shmid version sent [dest]" (sent: bytes of the last update
# this node sent for the segment, per peer). What `read` prints is compared as exact bytes.
#
# What is graded (behaviour -> check, points):
#   a late node reads what was written before it started, at once, and its
#     next change is a diff against what it received                         -> late-joiner-reads-at-once (2)
#   every node sees every peer up                                            -> start (1)
#   written on one node, read byte for byte on every node; a shorter write
#     ends at its NUL                                                        -> write-read (3)
#   every object of every node (queue, gates, alive set, replicas) is 0600    -> objects-private (1)
#   the text and its NUL fit --size exactly; one byte more is refused, on a
#     new and on an existing segment; --size 0 and over the limit refused    -> size-boundaries (2)
#   a 1-byte change in 1 MiB is sent as a diff; versions agree               -> diffs-on-the-wire (2)
#   rshmChanged while a peer is frozen (SIGSTOP) fails naming that peer; the
#     others have the data; the frozen peer converges once it runs again     -> frozen-peer-named (3)
#   two writers on two nodes at once end with identical bytes and versions
#     on every replica                                                       -> concurrent-writers-converge (3)
#   two nodes racing to create one key end with one rshmid everywhere        -> racing-creators-one-rshmid (2)
#   garbage on a node's TCP port drops that connection only                  -> garbage-from-a-stranger (1)
#   attach counts agree on every node; a follower sees each change           -> ref-counts (2)
#   rm marks (dest) everywhere; the segment goes at the last detach          -> removal-at-last-detach (2)
#   a client killed by SIGKILL while attached does not block the removal     -> killed-client-detached (2)
#   a node that left and came back learns the table by HELLO                 -> hello-merge (2)
#   a 1.5 MB text (several frames) reaches every node exactly, and again a
#     node that left and came back                                           -> large-change-exact (2)
#   a node restarted after SIGKILL recycles what its dead run left (no
#     manual ipcrm), says so, and reads the current data                     -> restart-after-sigkill (2)
#   a live node's port is refused to a second server, naming the pid         -> second-server-refused (1)
#   a node with another secret gets nothing and changes nothing              -> stranger-with-another-secret (2)
#   a secret file that group or others may read is refused, with the chmod   -> secret-file-guarded (1)
#   a node with the secret that no --peer lists gets nothing                 -> unlisted-peer-refused (1)
#   clear errors: no server, unknown key, usage                              -> clear-errors (1)
#   SIGTERM: each node says it leaves and removes its queue, gates and
#     replicas                                                               -> shutdown (2)
#   nothing is left on any key the grader used                               -> no-leaks (1)
source "$(dirname "$0")/lib.sh"
grade_args "$@"
grade_init "$GRADE_BINDIR" rshm_server client

# Three nodes' ports; each node's queue (0x52530000 + port), change
# gates (a semaphore set, 0x52470000 + port) and alive set (0x52410000 + port) are tracked.
PA=$(free_port 0x52530000 0x52470000 0x52410000)
PB=$(free_port 0x52530000 0x52470000 0x52410000)
PC=$(free_port 0x52530000 0x52470000 0x52410000)

# The group's secret, and the stranger's: files only we may read, so no node touches the
# user's default ~/.config/ipclab/rshm-secret.
new_secret() { (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"); }
SECRET="$IPCLAB_WORK/rshm-secret"
new_secret "$SECRET"

# start_node PORT PEER PEER: in the background, its stderr in $IPCLAB_WORK/PORT.log. The one
# place that starts an rshm_server: options every node needs go here.
start_node() {
    "$BIN/rshm_server" --listen "$1" --peer "$2" --peer "$3" --secret "${NODE_SECRET:-$SECRET}" \
        >/dev/null 2>>"$IPCLAB_WORK/$1.log" &
    track_pid $!
    echo $! >"$IPCLAB_WORK/$1.pid"
}
# stop_node PORT WHO: SIGTERM to the node on PORT, and wait until it has exited.
stop_node() {
    local pid
    pid=$(cat "$IPCLAB_WORK/$1.pid")
    kill -TERM "$pid"
    wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "$2 did not exit on SIGTERM"
}
# start_c WHO: node C (again), and every node sees every peer up.
start_c() {
    local p
    start_node "$PC" "$PA" "$PB"
    for p in $PA $PB $PC; do
        wait_for 10 all_up "$p" || fail "node $p never saw $1 up"
    done
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

# read_is PORT KEY TEXT: `client read KEY` on node PORT prints exactly TEXT and a newline.
read_is() {
    cl "$1" read "$2" >"$IPCLAB_WORK/read.out" 2>"$IPCLAB_WORK/read.err" || fail "read $2 on $1 failed: $(cat "$IPCLAB_WORK/read.err")"
    printf '%s\n' "$3" >"$IPCLAB_WORK/read.want"
    cmp -s "$IPCLAB_WORK/read.out" "$IPCLAB_WORK/read.want" ||
        fail "node $1 read [$(od -An -c "$IPCLAB_WORK/read.out" | tr -s ' \n' ' ' | head -c 200)], expected '$3' and a newline"
}

check_write_read() {
    local id p
    id=$(cl "$PA" write 0x71 "hello from A") || fail "write on A failed"
    [ "$id" -gt 0 ] 2>/dev/null || fail "write printed '$id', expected a positive rshmid"
    for p in $PA $PB $PC; do
        read_is "$p" 0x71 "hello from A"
        row "$p" 0x00000071 | awk -v id="$id" '$1 == id && $3 == 4096 && $4 == "127.0.0.1:'"$PA"'" { ok = 1 } END { exit !ok }' ||
            fail "node $p's row is not rshmid $id, 4096 bytes, owner A: $(row "$p" 0x00000071)"
    done
    [ "$(cl "$PC" write 0x71 "C replies")" = "$id" ] || fail "a write on C to an existing key printed another rshmid"
    for p in $PA $PB $PC; do read_is "$p" 0x71 "C replies"; done
    cl "$PB" write 0x71 "  two  spaces  " >/dev/null || fail "write on B failed"
    read_is "$PA" 0x71 "  two  spaces  "
}

# Another user on the machine must not reach a node's objects: whoever may write its queue can
# ask it anything (rm, write) in the owner's name. Every object a node makes is 0600: its
# queue, its gates and alive sets, and its replicas (found by the shmid `client ls` shows).
check_objects_private() {
    local p modes shmid perms
    for p in $PA $PB $PC; do
        modes="$(modes_with_key $((0x52530000 + p))) $(modes_with_key $((0x52470000 + p))) $(modes_with_key $((0x52410000 + p)))"
        [ "$modes" = "msg 600 sem 600 sem 600" ] ||
            fail "node $p's queue, gates and alive set have modes '$modes', expected 'msg 600 sem 600 sem 600'"
        shmid=$(row "$p" 0x00000071 | awk '{print $6}')
        # The replica is marked for removal from the start (SHM_DEST, 01000, shows as "1600").
        perms=$(awk -v id="$shmid" 'NR > 1 && $2 == id { print $3 % 1000 }' /proc/sysvipc/shm)
        [ "$perms" = 600 ] || fail "node $p's replica (shmid $shmid) has mode '$perms', expected 600"
    done
}

check_size_boundaries() {
    local out rc
    cl "$PA" write 0x77 "1234567" --size 8 >/dev/null || fail "7 bytes and the NUL did not fit --size 8"
    read_is "$PB" 0x77 "1234567"
    out=$(cl "$PB" write 0x77 "12345678" 2>&1) && fail "8 bytes and the NUL were accepted into 8"
    [[ $out == "client: text of 9 bytes (with its NUL) does not fit segment "* ]] || fail "8 bytes into 8 said: $out"
    read_is "$PC" 0x77 "1234567"
    out=$(cl "$PA" write 0x78 "123456789" --size 8 2>&1) && fail "a new segment of 8 took 9 bytes"
    [[ $out == "client: text of 10 bytes (with its NUL) does not fit segment "* ]] || fail "9 bytes into a new 8 said: $out"
    cl "$PA" write 0x7a x --size 1 >/dev/null 2>&1 && fail "a 1-byte segment took 'x' and its NUL"
    cl "$PA" write 0x79 x --size 0 >/dev/null 2>&1
    rc=$?
    [ "$rc" = 2 ] || fail "--size 0 exited $rc, expected 2"
    cl "$PA" write 0x79 x --size 1073741825 >/dev/null 2>&1
    rc=$?
    [ "$rc" != 0 ] || fail "a 1 GiB + 1 segment was accepted"
    no_row "$PA" 0x00000079 || fail "a refused size left a segment"
    cl "$PA" rm 0x77 || fail "rm failed"
    wait_for 10 no_row "$PC" 0x00000077 || fail "the segment stayed after rm"
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

check_frozen_peer() {
    local pid out
    cl "$PA" write 0x65 "first" >/dev/null || fail "write on A failed"
    pid=$(cat "$IPCLAB_WORK/$PC.pid")
    kill -STOP "$pid"
    out=$(cl "$PA" write 0x65 "while C froze" 2>&1)
    local rc=$?
    kill -CONT "$pid"
    [ "$rc" = 1 ] || fail "rshmChanged with a frozen peer exited $rc, expected 1"
    [[ $out == *"peer 127.0.0.1:$PC"* ]] || fail "rshmChanged with C frozen did not name C (127.0.0.1:$PC): $out"
    read_is "$PB" 0x65 "while C froze"
    wait_for 10 bash -c "[ \"\$('$BIN/client' --port $PC read 0x65 2>/dev/null)\" = 'while C froze' ]" ||
        fail "the thawed node C never got the write: $(cl "$PC" read 0x65 2>&1)"
    out=$(cl "$PC" write 0x65 "C is back" 2>&1) || fail "a write on the thawed C failed: $out"
    read_is "$PA" 0x65 "C is back"
}

check_concurrent_writers() {
    local i p v
    cl "$PA" write 0x69 "start" --size 256 >/dev/null || fail "write on A failed"
    for i in A B; do
        (
            port=$PA
            [ $i = B ] && port=$PB
            for ((j = 0; j < 15; j++)); do
                timeout 20 "$BIN/client" --port "$port" write 0x69 "writer $i round $j with text of its own" >/dev/null 2>&1
            done
        ) &
    done
    wait
    for p in $PA $PB $PC; do cl "$p" read 0x69 >"$IPCLAB_WORK/conc.$p" || fail "read on $p failed"; done
    cmp -s "$IPCLAB_WORK/conc.$PA" "$IPCLAB_WORK/conc.$PB" || fail "A and B differ: '$(cat "$IPCLAB_WORK/conc.$PA")' vs '$(cat "$IPCLAB_WORK/conc.$PB")'"
    cmp -s "$IPCLAB_WORK/conc.$PA" "$IPCLAB_WORK/conc.$PC" || fail "A and C differ: '$(cat "$IPCLAB_WORK/conc.$PA")' vs '$(cat "$IPCLAB_WORK/conc.$PC")'"
    grep -qx "writer [AB] round 14 with text of its own" "$IPCLAB_WORK/conc.$PA" || fail "the last bytes are nobody's last write: $(cat "$IPCLAB_WORK/conc.$PA")"
    v=$(row "$PA" 0x00000069 | awk '{print $7}')
    for p in $PB $PC; do
        [ "$(row "$p" 0x00000069 | awk '{print $7}')" = "$v" ] || fail "versions differ: A $v, node $p $(row "$p" 0x00000069 | awk '{print $7}')"
    done
    [ "$v" -ge 16 ] 2>/dev/null || fail "version $v after 31 writes"
}

check_racing_creators() {
    local round key ids p n
    for round in 1 2 3 4 5 6; do
        key=$((0x6400 + round))
        for p in $PA $PB; do
            timeout 20 "$BIN/client" --port "$p" write "$key" "racer on $p" --size 64 >"$IPCLAB_WORK/race.$p" 2>&1 &
        done
        wait
        ids=$(cat "$IPCLAB_WORK/race.$PA" "$IPCLAB_WORK/race.$PB" | sort -u | tr '\n' ' ')
        [[ "$ids" =~ ^[0-9]+\ $ ]] || fail "round $round: two writers racing to create key $key got rshmids: $ids"
        for p in $PA $PB $PC; do
            n=$(cl "$p" ls | awk -v k="$(printf '0x%08x' "$key")" '$2 == k' | wc -l)
            [ "$n" = 1 ] || fail "round $round: node $p lists $n segments with key $key"
        done
        cl "$PA" rm "$key" || fail "rm failed"
    done
    for p in $PA $PB $PC; do
        wait_for 10 bash -c "! '$BIN/client' --port $p ls | grep -q ' 0x000064'" || fail "node $p kept a raced segment after rm"
    done
}

check_garbage_from_a_stranger() {
    # Bytes that are no frame, on a node's TCP port: it drops that connection, and only that.
    (
        exec 3<>"/dev/tcp/127.0.0.1/$PB" || exit 0
        head -c 5000 /dev/urandom >&3
        timeout 5 cat <&3 >/dev/null
    ) 2>/dev/null
    (
        exec 3<>"/dev/tcp/127.0.0.1/$PB" || exit 0
        printf 'GET / HTTP/1.0\r\n\r\n' >&3
        timeout 5 cat <&3 >/dev/null
    ) 2>/dev/null
    all_up "$PB" || fail "node B lost a peer after garbage on its port"
    cl "$PA" write 0x6a "after the garbage" >/dev/null || fail "a write failed after garbage reached B"
    read_is "$PB" 0x6a "after the garbage"
    cl "$PB" rm 0x6a || fail "rm failed"
}

check_killed_client() {
    local f p
    cl "$PA" write 0x67 "held" >/dev/null || fail "write failed"
    "$BIN/client" --port "$PB" read 0x67 --follow >"$IPCLAB_WORK/kf.out" 2>&1 &
    f=$!
    track_pid "$f"
    wait_for 10 grep -q . "$IPCLAB_WORK/kf.out" || fail "read --follow printed nothing"
    for p in $PA $PB; do
        [ "$(row "$p" 0x00000067 | awk '{print $5}')" = 1 ] || fail "node $p shows $(row "$p" 0x00000067 | awk '{print $5}') attaches, expected 1"
    done
    cl "$PA" rm 0x67 || fail "rm failed"
    kill -KILL "$f"
    for p in $PA $PB $PC; do
        wait_for 10 no_row "$p" 0x00000067 || fail "node $p kept the segment after its last (killed) attacher"
    done
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
    local id got
    stop_node "$PC" "node C"
    id=$(cl "$PA" write 0x72 "while C was away") || fail "write on A with C down failed"
    start_c "the restarted C"
    row "$PC" 0x00000072 | grep -q "^$id " || fail "C did not learn rshmid $id from HELLO"
    got=$(cl "$PC" read 0x72)
    [ "$got" = "while C was away" ] || fail "restarted C read '$got' before any new write, expected the current data"
    cl "$PA" write 0x72 "after C is back" >/dev/null
    got=$(cl "$PC" read 0x72)
    [ "$got" = "after C is back" ] || fail "C read '$got'"
}

# big_read_is PORT KEY FILE: `client read KEY` on node PORT prints exactly FILE's bytes (a text
# and its newline), compared with cmp; a failure says how much came, not the megabytes.
big_read_is() {
    cl "$1" read "$2" >"$IPCLAB_WORK/big.out" 2>"$IPCLAB_WORK/big.err" ||
        fail "read $2 on $1 failed: $(head -c 300 "$IPCLAB_WORK/big.err")"
    cmp "$IPCLAB_WORK/big.out" "$3" >"$IPCLAB_WORK/big.cmp" 2>&1 ||
        fail "node $1 read $(wc -c <"$IPCLAB_WORK/big.out") bytes, expected the $(wc -c <"$3") written: $(head -n 1 "$IPCLAB_WORK/big.cmp")"
}

check_large_change() {
    local i p parts=()
    # 12 words of 130,000 characters (base64: no spaces, never a leading '-'; one argument
    # may hold 128 KiB): 1,560,011 bytes with the spaces between them, more than the 1 MiB one
    # frame carries, so the change travels as several UPDATE frames.
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
        parts+=("$(head -c 97500 /dev/urandom | base64 -w 0)")
    done
    printf '%s\n' "${parts[*]}" >"$IPCLAB_WORK/big.want"
    cl "$PA" write 0x7b "${parts[@]}" --size 2097152 >/dev/null || fail "writing 1.5 MB on A failed"
    for p in $PB $PC; do big_read_is "$p" 0x7b "$IPCLAB_WORK/big.want"; done
    # C leaves and comes back: the segment reaches it again, as several STATE frames.
    stop_node "$PC" "node C"
    start_c "the restarted C"
    big_read_is "$PC" 0x7b "$IPCLAB_WORK/big.want"
    cl "$PA" rm 0x7b >/dev/null || fail "rm failed"
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
    # What C publishes next is a diff against what it received: one byte, one word (and back).
    local text sent
    for text in "there before D" "there before C"; do
        cl "$PC" write 0x75 "$text" >/dev/null || fail "a write on the late node C failed"
        sent=$(row "$PC" 0x00000075 | awk '{print $8}')
        [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$sent" -le 64 ] ||
            fail "a 1-byte change on the late node C put '$sent' bytes on the wire, expected at most 64 (a diff against what C received)"
        [ "$(cl "$PA" read 0x75)" = "$text" ] || fail "A did not get the late node's change to '$text'"
    done
}

check_restart_after_kill() {
    local pid got
    pid=$(cat "$IPCLAB_WORK/$PC.pid")
    kill -KILL "$pid"
    wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "node C did not die on SIGKILL"
    cl "$PA" write 0x76 "written while C was dead" >/dev/null || fail "write on A with C dead failed"
    # SIGKILL left C's queue, gates and alive set: the new C must recycle them by itself.
    [ -n "$(objects_with_key $((0x52530000 + PC)))" ] || fail "C's queue vanished with C: nothing to recycle?"
    start_c "the restarted C"
    grep -q "died without cleaning up" "$IPCLAB_WORK/$PC.log" ||
        fail "the restarted C did not say it recycled the dead run's objects"
    got=$(cl "$PC" read 0x76)
    [ "$got" = "written while C was dead" ] || fail "restarted C read '$got'"
}

check_second_server() {
    local out rc pid
    pid=$(cat "$IPCLAB_WORK/$PA.pid")
    out=$(timeout 10 "$BIN/rshm_server" --listen "$PA" --peer "$PB" --secret "$SECRET" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" = 1 ] || fail "a second rshm_server on A's port exited $rc, expected 1"
    case "$out" in *"pid $pid"*) ;; *) fail "the refusal does not name A's pid $pid: $out" ;; esac
    kill -0 "$pid" 2>/dev/null || fail "A died when a second server tried its port"
    [ "$(cl "$PA" read 0x75)" = "there before C" ] || fail "A no longer serves after the refusal"
}

check_stranger() {
    local got p
    # C leaves (SIGTERM), and a stranger takes its port and its place in A's and B's peer
    # lists, with everything but the secret.
    stop_node "$PC" "node C"
    NODE_SECRET="$IPCLAB_WORK/stranger-secret"
    new_secret "$NODE_SECRET"
    start_node "$PC" "$PA" "$PB"
    NODE_SECRET=
    wait_for 10 sh -c "'$BIN/client' --port $PC ls >/dev/null 2>&1" || fail "the stranger's node never started"
    sleep 2
    cl "$PC" ls | head -n 1 | grep -q ' up' && fail "a node with another secret saw a peer up: $(cl "$PC" ls | head -n 1)"
    got=$(cl "$PC" read 0x75 2>/dev/null) && fail "a node with another secret read '$got'"
    # Nor can it write into the group: its write stays on its own node.
    cl "$PC" write 0x75 "forged" >/dev/null 2>&1
    sleep 1
    for p in $PA $PB; do
        [ "$(cl "$p" read 0x75)" = "there before C" ] || fail "the stranger's write reached node $p"
    done
    stop_node "$PC" "the stranger"
    # The real C comes back, and the group is whole again for the checks after this one.
    start_c "the real C again"
    [ "$(cl "$PC" read 0x75)" = "there before C" ] || fail "the real C does not read the group's data"
}

# A secret file that group or others may read would let them join: refused before the node
# serves anything, with the chmod to run.
check_secret_file() {
    local out rc mode port f="$IPCLAB_WORK/open-secret"
    port=$(free_port 0x52530000 0x52470000 0x52410000)
    new_secret "$f"
    for mode in 644 640; do
        chmod "$mode" "$f"
        out=$(timeout 5 "$BIN/rshm_server" --listen "$port" --peer "$PA" --secret "$f" 2>&1 </dev/null)
        rc=$?
        [ "$rc" = 1 ] || fail "a secret file of mode 0$mode gave exit $rc, expected 1 (refused)"
        [[ $out == *"chmod 600"* ]] || fail "a secret file of mode 0$mode was refused without the chmod to run: $out"
    done
}

# A node with the group's secret but on an address no node lists in its --peer gets nothing.
check_unlisted_peer() {
    local port got
    port=$(free_port 0x52530000 0x52470000 0x52410000)
    start_node "$port" "$PA" "$PB"
    wait_for 10 sh -c "'$BIN/client' --port $port ls >/dev/null 2>&1" || fail "the unlisted node never started"
    sleep 2
    cl "$port" ls | head -n 1 | grep -q ' up' && fail "a node that no --peer lists saw a peer up: $(cl "$port" ls | head -n 1)"
    got=$(cl "$port" read 0x75 2>/dev/null) && fail "a node that no --peer lists read '$got'"
    stop_node "$port" "the unlisted node"
}

check_errors() {
    local out rc
    out=$("$BIN/client" --port 1 ls 2>&1) && fail "client on a port with no server succeeded"
    case "$out" in "client: no rshm_server on port 1 "*) ;; *) fail "unclear error: $out" ;; esac
    out=$(cl "$PA" read 0x7f 2>&1) && fail "reading an unknown key succeeded"
    case "$out" in "client: rshmget(key=0x0000007f): no segment"*) ;; *) fail "unclear error: $out" ;; esac
    out=$(cl "$PA" write 0x73 "too long for it" --size 4 2>&1) && fail "an oversized text was accepted"
    case "$out" in "client: text of 16 bytes"*) ;; *) fail "unclear error: $out" ;; esac
    for args in frobnicate read "write 0x73"; do
        # shellcheck disable=SC2086
        cl "$PA" $args >/dev/null 2>&1
        rc=$?
        [ "$rc" = 2 ] || fail "client $args exited $rc, expected 2"
    done
    timeout 10 "$BIN/rshm_server" --listen x >/dev/null 2>&1
    rc=$?
    [ "$rc" = 2 ] || fail "rshm_server --listen x exited $rc, expected 2"
}

check_shutdown() {
    local p pid shmid replicas=()
    # Each node's replicas have no key (IPC_PRIVATE), so no key-based check sees them: note
    # each one's shmid and creator (the node's pid), to find any that outlives its node.
    cl "$PA" write 0x7c "at shutdown" >/dev/null || fail "write on A failed"
    for p in $PA $PB $PC; do
        pid=$(cat "$IPCLAB_WORK/$p.pid")
        for shmid in $(cl "$p" ls | awk 'NR > 2 { print $6 }'); do
            replicas+=("$shmid:$pid:$p")
        done
    done
    [ ${#replicas[@]} -ge 3 ] || fail "found ${#replicas[@]} replicas on the three nodes, expected one each at least"
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
        [ -z "$(objects_with_key $((0x52410000 + p)))" ] || fail "node $p left its alive set"
    done
    local r
    for r in "${replicas[@]}"; do
        IFS=: read -r shmid pid p <<<"$r"
        awk -v id="$shmid" -v pid="$pid" 'NR > 1 && $2 == id && $5 == pid { found = 1 } END { exit !found }' /proc/sysvipc/shm &&
            fail "node $p left its replica (shmid $shmid) after it exited"
    done
    return 0
}

check late-joiner-reads-at-once 2 check_late_joiner
check start 1 check_start
check write-read 3 check_write_read
check objects-private 1 check_objects_private
check size-boundaries 2 check_size_boundaries
check diffs-on-the-wire 2 check_diffs
check frozen-peer-named 3 check_frozen_peer
check concurrent-writers-converge 3 check_concurrent_writers
check racing-creators-one-rshmid 2 check_racing_creators
check garbage-from-a-stranger 1 check_garbage_from_a_stranger
check ref-counts 2 check_ref_counts
check removal-at-last-detach 2 check_removal
check killed-client-detached 2 check_killed_client
check hello-merge 2 check_hello_merge
check large-change-exact 2 check_large_change
check stranger-with-another-secret 2 check_stranger
check secret-file-guarded 1 check_secret_file
check unlisted-peer-refused 1 check_unlisted_peer
check restart-after-sigkill 2 check_restart_after_kill
check second-server-refused 1 check_second_server
check clear-errors 1 check_errors
check shutdown 2 check_shutdown
check no-leaks 1 check_no_leaks
grade_finish
