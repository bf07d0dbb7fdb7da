#!/usr/bin/env bash
# lab/grade/03-shmem-flock.sh: grades the shmem library (seed 004) through shmem_tool.
#
#     lab/grade/03-shmem-flock.sh [BINDIR]
#
# The library has no programs of its own; shmem_tool is its command line (one library call per
# command), so every check below drives the library from separate processes, as a student's
# own programs would: a round trip, the seed's size rules, one creator among racing openers,
# no torn read between processes or threads, a SIGKILLed lock holder that blocks nobody,
# delete, and no leftover objects.
#
# Each check stops at its first failure: `cond || fail "why"` (fail ends the check).

source "$(dirname "$0")/lib.sh"
grade_init "${1:-}" shmem_tool

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

check_round_trip() {
    local k got
    k=$(key_file rt)
    T write "$k" --size 64 hello grader || fail "write --size 64 failed"
    got=$(T read "$k" --text) || fail "read --text failed"
    [ "$got" = "hello grader" ] || fail "read --text printed '$got', expected 'hello grader'"
    got=$(T read "$k" | wc -c)
    [ "$got" = 64 ] || fail "read printed $got bytes, expected the whole 64-byte segment"
    printf 'bye' | T write "$k" || fail "write from stdin failed"
    got=$(T read "$k" --text)
    [ "$got" = "byelo grader" ] || fail "a shorter write gave '$got', expected 'byelo grader'"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_size_errors() {
    local k err
    k=$(key_file sizes)
    T write "$k" --size 64 x || fail "write --size 64 failed"
    if err=$(T write "$k" "$(printf 'y%.0s' {1..65})" 2>&1); then fail "65 bytes into 64 succeeded"; fi
    [[ $err == "shmem_tool: shmem write: 65 bytes do not fit the 64-byte segment" ]] ||
        fail "too-big write said: $err"
    if err=$(T read "$k" --size 128 2>&1); then fail "opening a 64-byte segment as 128 succeeded"; fi
    [[ $err == *"has 64 bytes, not 128" ]] || fail "size mismatch said: $err"
    T read "$k" --size lots >/dev/null 2>&1
    [ $? = 2 ] || fail "a non-number --size is not a usage error (exit 2)"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_one_creator() {
    local k i created
    k=$(key_file race)
    for i in 1 2 3 4 5 6; do T stat "$k" --size 4096 >"race.$i" & done
    wait
    created=$(cat race.* | grep -c 'created=yes')
    [ "$created" = 1 ] || fail "$created of 6 racing openers say they created the segment"
    [ "$(cut -d' ' -f2 race.* | sort -u | wc -l)" = 1 ] || fail "racing openers got different shmids"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_no_torn_processes() {
    local k i out
    k=$(key_file torn)
    T stat "$k" --size $TORN_SIZE >/dev/null || fail "creating the segment failed"
    for i in 1 2 3; do
        T hammer "$k" --writers 1 --readers 1 --count 2000 --first-writer $((i * 10)) >"torn.$i" 2>&1 &
    done
    wait
    for i in 1 2 3; do
        out=$(cat "torn.$i")
        # At least 2000 each; readers go on until they have seen a write, so changes >= 1.
        [[ $out =~ ^reads=[0-9]+\ writes=[0-9]+\ torn=0\ changes=[1-9][0-9]*$ ]] ||
            fail "hammer process $i: $out"
    done
    T delete "$k" >/dev/null || fail "delete failed"
}

check_no_torn_threads() {
    local k out
    k=$(key_file threads)
    out=$(T hammer "$k" --size $TORN_SIZE --writers 2 --readers 3 --count 2000 2>&1) ||
        fail "hammer with threads: $out"
    [[ $out =~ ^reads=[0-9]+\ writes=[0-9]+\ torn=0\ changes=([0-9]+)$ ]] ||
        fail "hammer with threads: $out"
    ((BASH_REMATCH[1] >= 3)) || fail "the 3 reader threads did not all see a write: $out"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_killed_holder() {
    local k holder reader i
    k=$(key_file kill)
    T write "$k" --size 32 survived || fail "write failed"
    "$BIN/shmem_tool" hold "$k" --exclusive >hold.out 2>&1 &
    holder=$!
    track_pid "$holder"
    wait_for 10 grep -q '^holding LOCK_EX' hold.out || fail "hold never said 'holding LOCK_EX'"
    T read "$k" --text >read.out 2>&1 &
    reader=$!
    track_pid "$reader"
    sleep 0.3
    kill -0 "$reader" 2>/dev/null || fail "read did not wait for the exclusive holder"
    kill -KILL "$holder"
    exit_within "$reader" 10 || fail "read still blocked 10 s after the holder was SIGKILLed"
    [ "$RC" = 0 ] || fail "read failed after the holder died: $(cat read.out)"
    [ "$(cat read.out)" = survived ] || fail "read printed '$(cat read.out)'"
    T delete "$k" >/dev/null || fail "delete failed"
}

check_delete() {
    local k key out
    k=$(key_file del)
    key=$(ftok_key "$k" "$PROJ")
    T write "$k" --size 16 x || fail "write failed"
    [ -n "$(objects_with_key "$key")" ] || fail "no segment with the key file's key after write"
    out=$(T delete "$k") || fail "delete failed"
    [[ $out == "deleted key="* ]] || fail "delete printed '$out'"
    [ -z "$(objects_with_key "$key")" ] || fail "the segment is still there after delete"
    if out=$(T read "$k" 2>&1); then fail "read after delete succeeded"; fi
    [[ $out == "shmem_tool: shmem open $k: no segment with key"* ]] || fail "read after delete said: $out"
}

check round-trip check_round_trip
check size-errors check_size_errors
check one-creator check_one_creator
check no-torn-reads-processes check_no_torn_processes
check no-torn-reads-threads check_no_torn_threads
check killed-holder-blocks-nobody check_killed_holder
check delete check_delete
check no-leaks check_no_leaks
grade_finish
