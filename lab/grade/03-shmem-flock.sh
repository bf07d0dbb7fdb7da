#!/usr/bin/env bash
# lab/grade/03-shmem-flock.sh: grades the shmem library (seed 004) through shmem_tool.
#
#     lab/grade/03-shmem-flock.sh [BINDIR] [--json FILE]
#
# The library has no programs of its own; shmem_tool is its command line (one library call per
# command), so every check below drives the library from separate processes, as a student's
# own programs would. Bytes are compared with cmp, never through $(...).
#
# What it does not grade: the C API (include/shmem.h) and lab 03's C server.c and client.c.
# Both call the same Rust library through src/ffi/shmem.rs, so a bug planted in the library
# fails here too; the C layer itself (NULLed handles, errno, shmem_error, fork, threads on one
# handle) is checked by ipclab's own tests/shmem_c.rs, which compiles the C programs with cc.
#
# What is graded (behaviour -> check, points):
#   write then read between processes: read prints the whole segment, exactly;
#     --text up to the first NUL (not the last); a shorter write keeps the rest;
#     binary stdin, also from a pipe that delivers it in pieces; the segment is
#     0600; the key file's own content is left alone                          -> round-trip-exact-bytes (3)
#   the seed's sizes: N-1 and N bytes fit an N-byte segment, N+1 is refused and
#     changes nothing; opening it as N-1 or N+1 fails naming both sizes; 0 fails -> size-boundaries (3)
#   without --size nothing is ever created                                  -> open-never-creates (1)
#   exactly one of racing openers creates the segment                        -> one-creator (2)
#   LOCK_EX excludes readers, writers and other holders; LOCK_SH admits
#     readers, holds writers off; waiting ends as soon as the holder is done -> lock-exclusion (4)
#   no read torn by a write of another process (64 KiB, distinct patterns)  -> no-torn-reads-processes (3)
#   no read torn between threads of one process                              -> no-torn-reads-threads (2)
#   read-modify-write is atomic: racing incr processes and threads lose no
#     update                                                                 -> atomic-increment (4)
#   a LOCK_EX or LOCK_SH holder killed by SIGKILL blocks nobody               -> killed-holder-blocks-nobody (2)
#   delete removes the segment; the next open makes a new, zeroed one         -> delete (2)
#   usage errors exit 2, runtime errors 1, with the program's prefix, on
#     stderr (stdout stays empty; also in the checks above)                  -> usage (1)
#   nothing is left on any key the grader used                                -> no-leaks (1)

source "$(dirname "$0")/lib.sh"
grade_args "$@"
grade_init "$GRADE_BINDIR" shmem_tool

PROJ=77 # 'M', SHMEM_PROJ_ID in src/params.rs
T() { timeout 20 "$BIN/shmem_tool" "$@"; }
# Torn-read checks use 64 KiB: a long copy overlaps a write often, so a build that skips the
# lock anywhere tears hundreds of reads; at 4 KiB it might tear only a few.
TORN_SIZE=65536

# key_file NAME: a fresh key file whose key is tracked for cleanup.
key_file() {
    local f
    f=$(new_key_file "$1")
    track_key "$(ftok_key "$f" "$PROJ")"
    echo "$f"
}

# same FILE WANT WHAT: FILE holds exactly the bytes of the file WANT.
same() {
    cmp -s "$1" "$2" ||
        fail "$3: got $(stat -c %s "$1") bytes [$(head -c 48 "$1" | od -An -c | tr -s ' \n' ' ')], expected $(stat -c %s "$2") bytes [$(head -c 48 "$2" | od -An -c | tr -s ' \n' ' ')]"
}

# zeros N: N NUL bytes on stdout.
zeros() { head -c "$1" /dev/zero; }

# quiet_stdout WHAT: the failed command before printed nothing on stdout (err.stdout): errors
# go to stderr, so that `shmem_tool read | prog` never feeds an error message to prog.
quiet_stdout() {
    [ ! -s "$IPCLAB_WORK/err.stdout" ] || fail "$1: the error went to stdout: $(head -c 200 "$IPCLAB_WORK/err.stdout")"
}

check_round_trip() {
    local k i
    k=$(key_file rt)
    T write "$k" --size 64 hello grader || fail "write --size 64 failed"
    T read "$k" >rt.out || fail "read failed"
    { printf 'hello grader'; zeros 52; } >rt.want
    same rt.out rt.want "read of a 64-byte segment after 'write hello grader'"
    T read "$k" --text >rt.out || fail "read --text failed"
    printf 'hello grader\n' >rt.want
    same rt.out rt.want "read --text"
    printf 'bye' | T write "$k" || fail "write from stdin failed"
    T read "$k" --text >rt.out
    printf 'byelo grader\n' >rt.want
    same rt.out rt.want "read --text after a shorter write from stdin"
    # Every byte value, NULs and a final newline included, from stdin.
    for ((i = 0; i < 64; i++)); do printf "\\$(printf '%03o' $(((i * 37 + 10) % 256)))"; done >rt.bin
    T write "$k" <rt.bin || fail "a binary write from stdin failed"
    T read "$k" >rt.out
    same rt.out rt.bin "read after a 64-byte binary write"
    [ "$(modes_with_key "$(ftok_key "$k" "$PROJ")" | tr '\n' ' ')" = "shm 600 " ] ||
        fail "the segment's mode is '$(modes_with_key "$(ftok_key "$k" "$PROJ")" | tr '\n' ' ')', expected 'shm 600'"
    # stdin from a pipe whose writer pauses: the data is all of stdin, not the first read(2).
    { printf 'one,'; sleep 0.3; printf 'two,'; sleep 0.3; printf 'three'; } | T write "$k" ||
        fail "a write from a slow pipe failed"
    T read "$k" | head -c 13 >rt.out
    printf 'one,two,three' >rt.want
    same rt.out rt.want "the first 13 bytes after writing 'one,two,three' through a pipe in three pieces"
    # --text stops at the first NUL, even with text after it.
    local kt
    kt=$(key_file text)
    printf 'ab\0cd' | T write "$kt" --size 8 || fail "write --size 8 from stdin failed"
    T read "$kt" --text >rt.out || fail "read --text failed"
    printf 'ab\n' >rt.want
    same rt.out rt.want "read --text of 'ab\\0cd\\0\\0\\0'"
    T read "$kt" >rt.out
    printf 'ab\0cd\0\0\0' >rt.want
    same rt.out rt.want "read of 'ab\\0cd' in an 8-byte segment"
    T delete "$kt" >/dev/null
    # The key file is only a name: opening the segment never changes its content.
    local kc
    kc=$(key_file content)
    printf 'notes kept in the key file\n' >"$kc"
    cp "$kc" rt.keep
    T write "$kc" --size 8 abc || fail "write on a key file with content failed"
    same "$kc" rt.keep "the key file's content after write --size"
    T delete "$kc" >/dev/null
    # A second process of another kind reads what a first wrote, without --size.
    T write "$k" "no final newline" || fail "write failed"
    T read "$k" | head -c 16 >rt.out
    printf 'no final newline' >rt.want
    same rt.out rt.want "the first 16 bytes after writing 'no final newline'"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_size_boundaries() {
    local k err rc n
    k=$(key_file sizes)
    T write "$k" --size 64 x || fail "write --size 64 failed"
    for n in 63 64; do
        head -c "$n" /dev/urandom >sz.in
        T write "$k" <sz.in || fail "$n bytes into a 64-byte segment were refused"
        T read "$k" | head -c "$n" >sz.out
        same sz.out sz.in "$n bytes written into 64"
    done
    cp sz.in sz.before
    head -c 65 /dev/zero | tr '\0' y >sz.big
    if err=$(T write "$k" <sz.big 2>&1 >"$IPCLAB_WORK/err.stdout"); then fail "65 bytes into 64 succeeded"; fi
    quiet_stdout "65 bytes into 64"
    [[ $err == "shmem_tool: shmem write: 65 bytes do not fit the 64-byte segment" ]] ||
        fail "65 bytes from stdin said: $err"
    T write "$k" "$(printf 'y%.0s' {1..65})" >"$IPCLAB_WORK/err.stdout" 2>sz.err
    rc=$?
    [ "$rc" = 1 ] || fail "65 bytes of words into 64 exited $rc, expected 1"
    quiet_stdout "65 bytes of words into 64"
    grep -q "^shmem_tool: shmem write: 65 bytes do not fit the 64-byte segment" sz.err || fail "65 bytes of words into 64 said on stderr: $(cat sz.err)"
    T read "$k" >sz.out
    same sz.out sz.before "the segment after a refused 65-byte write"
    for n in 63 65 128; do
        if err=$(T read "$k" --size "$n" 2>&1 >"$IPCLAB_WORK/err.stdout"); then fail "opening a 64-byte segment as $n succeeded"; fi
        quiet_stdout "opening a 64-byte segment as $n"
        [[ $err == "shmem_tool: shmem open $k: the segment of key 0x"*" has 64 bytes, not $n" ]] ||
            fail "opening 64 bytes as $n said: $err"
    done
    T stat "$k" --size 64 >sz.stat || fail "opening with the right size failed"
    grep -q " size=64 attaches=1 created=no$" sz.stat || fail "stat said: $(cat sz.stat)"
    if err=$(T stat "$(key_file zero)" --size 0 2>&1 >"$IPCLAB_WORK/err.stdout"); then fail "--size 0 succeeded"; fi
    quiet_stdout "--size 0"
    [[ $err == *"size must be at least 1 byte" ]] || fail "--size 0 said: $err"
    T write "$(key_file one)" --size 1 z || fail "a 1-byte segment was refused"
    T read "$IPCLAB_WORK/one" >sz.out
    printf 'z' >sz.want
    same sz.out sz.want "a 1-byte segment"
    T delete "$IPCLAB_WORK/one" >/dev/null
    T read "$k" --size lots >/dev/null 2>&1
    [ $? = 2 ] || fail "a non-number --size is not a usage error (exit 2)"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_open_never_creates() {
    local k err key
    k=$(key_file nc)
    key=$(ftok_key "$k" "$PROJ")
    for cmd in read stat incr hammer delete; do
        if err=$(T $cmd "$k" 2>&1 >"$IPCLAB_WORK/err.stdout"); then fail "$cmd without --size on a new key file succeeded"; fi
        quiet_stdout "$cmd without --size on a new key file"
        [[ $err == "shmem_tool: shmem open $k: no segment with key 0x"* ]] || fail "$cmd without a segment said: $err"
        [ -z "$(objects_with_key "$key")" ] || fail "$cmd without --size created a segment"
    done
    if T read "$IPCLAB_WORK/no-such-file" >/dev/null 2>&1; then fail "read of a missing key file succeeded"; fi
    [ ! -e "$IPCLAB_WORK/no-such-file" ] || fail "read without --size created the key file"
}

check_one_creator() {
    local k i round created
    for round in 1 2 3; do
        k=$(key_file "race$round")
        for i in 1 2 3 4 5 6; do T stat "$k" --size 4096 >"race$round.$i" & done
        wait
        created=$(cat race"$round".* | grep -c 'created=yes')
        [ "$created" = 1 ] || fail "$created of 6 racing openers say they created the segment"
        [ "$(cat race"$round".* | grep -c ' size=4096 ')" = 6 ] || fail "not every racing opener opened 4096 bytes: $(cat race"$round".*)"
        [ "$(cut -d' ' -f2 race"$round".* | sort -u | wc -l)" = 1 ] || fail "racing openers got different shmids"
        T delete "$k" >/dev/null || fail "delete failed"
    done
}

# running PID: still running after a while (it waits for the lock).
still_waits() { sleep 0.4; kill -0 "$1" 2>/dev/null; }

# hold_lock NAME KIND SECS K: a holder in the background, waited for; sets HPID.
hold_lock() {
    "$BIN/shmem_tool" hold "$4" "--$2" --for "$3" >"$1.out" 2>&1 &
    HPID=$!
    track_pid "$HPID"
    wait_for 10 grep -q '^holding LOCK_' "$1.out" || fail "hold --$2 never said 'holding ...': $(cat "$1.out")"
}

check_lock_exclusion() {
    local k r w h2 start ms
    k=$(key_file lock)
    T write "$k" --size 32 before || fail "write failed"
    # LOCK_EX: a reader, a writer and a second exclusive holder all wait.
    hold_lock ex exclusive 2 "$k"
    start=$(date +%s%N)
    T read "$k" --text >lk.read 2>&1 &
    r=$!
    track_pid "$r"
    T write "$k" after >lk.write 2>&1 &
    w=$!
    track_pid "$w"
    "$BIN/shmem_tool" hold "$k" --exclusive --for 0 >lk.hold 2>&1 &
    h2=$!
    track_pid "$h2"
    still_waits "$r" || fail "read did not wait for an exclusive holder"
    kill -0 "$w" 2>/dev/null || fail "write did not wait for an exclusive holder"
    kill -0 "$h2" 2>/dev/null || fail "a second hold --exclusive did not wait for the first"
    ! grep -q holding lk.hold || fail "two processes held LOCK_EX at once"
    for p in $r $w $h2; do exit_within "$p" 10 || fail "a waiter still waits 10 s after a 2 s hold"; done
    ms=$((($(date +%s%N) - start) / 1000000))
    ((ms >= 1300)) || fail "the waiters finished $ms ms into a 2 s exclusive hold"
    exit_within "$HPID" 5 || fail "hold --for 2 did not end"
    grep -q '^released LOCK_EX' ex.out || fail "the holder did not say it released: $(cat ex.out)"
    # LOCK_SH: readers and a second shared holder go through, a writer waits.
    hold_lock sh shared 3 "$k"
    start=$(date +%s%N)
    T read "$k" --text >lk.read2 || fail "read failed under a shared holder"
    "$BIN/shmem_tool" hold "$k" --shared --for 0 >lk.sh2 2>&1 || fail "a second shared holder failed"
    ms=$((($(date +%s%N) - start) / 1000000))
    ((ms < 2000)) || fail "a reader waited $ms ms behind a shared holder"
    T write "$k" "third" >/dev/null 2>&1 &
    w=$!
    track_pid "$w"
    still_waits "$w" || fail "write did not wait for a shared holder"
    exit_within "$w" 10 || fail "write still waits after the shared hold"
    [ "$RC" = 0 ] || fail "the waiting write failed"
    exit_within "$HPID" 5
    T read "$k" --text >lk.out
    printf 'thirde\n' >lk.want
    same lk.out lk.want "the segment after the waiting writes"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_no_torn_processes() {
    local k i out
    k=$(key_file torn)
    T stat "$k" --size $TORN_SIZE >/dev/null || fail "creating the segment failed"
    # 6000 copies of 64 KiB each way keep every process busy long enough (a few tenths of a
    # second) that the three surely overlap, also when one starts late on a loaded machine.
    for i in 1 2 3; do
        T hammer "$k" --writers 1 --readers 1 --count 6000 --first-writer $((i * 10)) >"torn.$i" 2>&1 &
    done
    wait
    for i in 1 2 3; do
        out=$(head -n 1 "torn.$i")
        # Readers go on until they have seen a write, so changes >= 1.
        [[ $out =~ ^reads=([0-9]+)\ writes=([0-9]+)\ torn=0\ changes=[1-9][0-9]*$ ]] ||
            fail "hammer process $i: $(tr '\n' ' ' <"torn.$i")"
        ((BASH_REMATCH[1] >= 6000 && BASH_REMATCH[2] >= 6000)) || fail "hammer process $i did too little: $out"
    done
    T delete "$k" >/dev/null || fail "delete failed"
}

check_no_torn_threads() {
    local k out
    k=$(key_file threads)
    T hammer "$k" --size $TORN_SIZE --writers 2 --readers 3 --count 1500 >th.out 2>&1 ||
        fail "hammer with threads: $(tr '\n' ' ' <th.out)"
    out=$(head -n 1 th.out)
    [[ $out =~ ^reads=[0-9]+\ writes=[0-9]+\ torn=0\ changes=([0-9]+)$ ]] ||
        fail "hammer with threads: $out"
    ((BASH_REMATCH[1] >= 3)) || fail "the 3 reader threads did not all see a write: $out"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_atomic_increment() {
    local k i
    k=$(key_file incr)
    T incr "$k" --size 16 >in.first || fail "incr --size 16 failed"
    printf 'counter=1\n' >in.want
    same in.first in.want "the first incr"
    # An increment takes about a microsecond: 100000 of them keep each process busy for a tenth
    # of a second or more, so that the four surely overlap (with 400 each, a process could be
    # done before the next one has started, and an update that takes two locks, or none, went
    # through unnoticed).
    for i in 1 2 3 4; do T incr "$k" --count 100000 >"in.$i" 2>&1 & done
    T incr "$k" --count 25000 --threads 4 >in.t 2>&1 || fail "incr with threads failed: $(cat in.t)"
    wait
    T incr "$k" --count 0 >in.last || fail "incr --count 0 failed"
    printf 'counter=500001\n' >in.want
    same in.last in.want "the counter after 1 + 4*100000 + 4*25000 racing increments"
    # The counter is a little-endian u64 in the first 8 bytes; the rest is left alone.
    T read "$k" | head -c 8 | od -An -tu8 | tr -d ' ' >in.raw
    printf '500001\n' >in.want
    same in.raw in.want "the first 8 bytes as a little-endian u64"
    if T incr "$(key_file small)" --size 7 >/dev/null 2>&1; then fail "incr on a 7-byte segment succeeded"; fi
    T delete "$IPCLAB_WORK/small" >/dev/null
    T delete "$k" >/dev/null || fail "delete failed"
}

check_killed_holder() {
    local k holder reader kind
    k=$(key_file kill)
    T write "$k" --size 32 survived || fail "write failed"
    for kind in exclusive shared; do
        "$BIN/shmem_tool" hold "$k" --$kind >hold.out 2>&1 &
        holder=$!
        track_pid "$holder"
        wait_for 10 grep -q '^holding LOCK_' hold.out || fail "hold --$kind never said 'holding ...'"
        if [ $kind = exclusive ]; then
            T read "$k" --text >read.out 2>&1 &
        else
            T write "$k" survived >read.out 2>&1 &
        fi
        reader=$!
        track_pid "$reader"
        still_waits "$reader" || fail "the other side did not wait for the $kind holder"
        kill -KILL "$holder"
        exit_within "$reader" 10 || fail "still blocked 10 s after the $kind holder was SIGKILLed"
        [ "$RC" = 0 ] || fail "failed after the $kind holder died: $(cat read.out)"
    done
    T read "$k" --text >read.out
    printf 'survived\n' >read.want
    same read.out read.want "read after the holders died"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_delete() {
    local k key out
    k=$(key_file del)
    key=$(ftok_key "$k" "$PROJ")
    T write "$k" --size 16 x || fail "write failed"
    [ -n "$(objects_with_key "$key")" ] || fail "no segment with the key file's key after write"
    out=$(T delete "$k") || fail "delete failed"
    [[ $out =~ ^deleted\ key=0x([0-9a-f]{8})\ shmid=[0-9]+$ ]] || fail "delete printed '$out'"
    [ "0x${BASH_REMATCH[1]}" = "$(key_hex "$key")" ] || fail "delete named another key: $out"
    [ -z "$(objects_with_key "$key")" ] || fail "the segment is still there after delete"
    if out=$(T read "$k" 2>&1 >"$IPCLAB_WORK/err.stdout"); then fail "read after delete succeeded"; fi
    quiet_stdout "read after delete"
    [[ $out == "shmem_tool: shmem open $k: no segment with key"* ]] || fail "read after delete said: $out"
    T stat "$k" --size 16 >del.stat || fail "reopening after delete failed"
    grep -q "created=yes$" del.stat || fail "the open after delete did not create a new segment: $(cat del.stat)"
    T read "$k" >del.out
    zeros 16 >del.want
    same del.out del.want "the new segment after delete"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_usage() {
    local rc args k
    k=$(key_file us)
    for args in "" "frobnicate $k" "hold $k" "read $k --size lots" "read $k --bogus" "read $k extra"; do
        # shellcheck disable=SC2086
        T $args >us.out 2>us.err
        rc=$?
        [ "$rc" = 2 ] || fail "shmem_tool $args exited $rc, expected 2"
        grep -q "^shmem_tool: " us.err || fail "shmem_tool $args said: $(cat us.err)"
        [ ! -s us.out ] || fail "shmem_tool $args printed on stdout: $(head -c 200 us.out)"
    done
    T --help >us.out 2>&1 || fail "--help failed"
    grep -q "^Usage: shmem_tool COMMAND KEYFILE" us.out || fail "--help printed no usage"
}

check round-trip-exact-bytes 3 check_round_trip
check size-boundaries 3 check_size_boundaries
check open-never-creates 1 check_open_never_creates
check one-creator 2 check_one_creator
check lock-exclusion 4 check_lock_exclusion
check no-torn-reads-processes 3 check_no_torn_processes
check no-torn-reads-threads 2 check_no_torn_threads
check atomic-increment 4 check_atomic_increment
check killed-holder-blocks-nobody 2 check_killed_holder
check delete 2 check_delete
check usage 1 check_usage
check no-leaks 1 check_no_leaks
grade_finish
