# lab/01-shm-writer-reader/tour.sh: the tour's steps for lab 01 (shm_writer / shm_reader).
# Sourced by lab/tour.sh, which provides say, quoted, run, run_bg, wait_bg, expect_output,
# expect_lines, wait_for, tour_failed, new_key_file, track_key, track_pid and $IPCLAB_WORK. Takes
# about 3 s; leaves nothing behind.

# xfr_bg_to FILE COMMAND...: like run_bg, with the command's stdout going to FILE.
xfr_bg_to() {
    local out=$1
    shift
    STEP=$((STEP + 1))
    printf '$ %s > %s &\n' "$(quoted "$@")" "$(quoted "$out")"
    "$@" >"$out" &
    BG_PID=$!
    track_pid "$BG_PID"
}

# xfr_run_from FILE COMMAND...: like run, with the command's stdin coming from FILE.
xfr_run_from() {
    local in=$1
    shift
    STEP=$((STEP + 1))
    printf '$ %s < %s\n' "$(quoted "$@")" "$(quoted "$in")"
    "$@" <"$in" || tour_failed "$(quoted "$@") < $(quoted "$in")"
}

# xfr_expect_status N COMMAND...: run, and check that it exits with status N.
xfr_expect_status() {
    local want=$1 got
    shift
    STEP=$((STEP + 1))
    printf '$ %s\n' "$(quoted "$@")"
    "$@"
    got=$?
    printf '(exit status %s)\n' "$got"
    [ "$got" = "$want" ] || tour_failed "$(quoted "$@") exited $got, expected $want"
}

XFR_KEY=$(new_key_file xfr.key)
track_key "$(ftok_key "$XFR_KEY" 65)"
XFR_HEX=$(key_hex "$(ftok_key "$XFR_KEY" 65)")

say "A message through a segment. The writer creates the segment and a semaphore set on the key" \
    "ftok($XFR_KEY, 65), prints them, and waits for a reader (up to --timeout, 10 s)."
run_bg shm_writer -k "$XFR_KEY" hello world
run sleep 0.3

say "ipcview --once: the writer's objects decoded: the message waiting, FULL posted, the writer asleep on EMPTY (in class, run ipcview --key $XFR_HEX in a second terminal and watch the reader take it)"
xfr_published() { ipcview --once --key "$XFR_HEX" | grep -q 'waiting for the reader'; }
wait_for 5 xfr_published || tour_failed "the writer never published its message"
expect_lines ipcview --once --key "$XFR_HEX" -- \
    "  writer pid $BG_PID alive, reader none yet" \
    "  message of 12 bytes, waiting for the reader" \
    "  sem 3 FULL       value 1     ncnt 0   zcnt 0   last pid $BG_PID alive" \
    "  sem 4 EMPTY      value 0     ncnt 1   zcnt 0   last pid -"
expect_output "hello world" shm_reader -k "$XFR_KEY"
wait_bg

say "Either side may start first: the reader waits for a writer. IPCLAB_TRACE=1 shows each step."
run_bg shm_reader -k "$XFR_KEY"
run sleep 0.3
run env IPCLAB_TRACE=1 shm_writer -k "$XFR_KEY" the reader came first
wait_bg

say "Alone, a side gives up after --timeout with status 1, and leaves no object behind."
xfr_expect_status 1 shm_reader -k "$XFR_KEY" --timeout 0.5

say "Stream mode: any amount of data through a ring of slots, writer and reader at the same time."
run dd if=/dev/urandom of="$IPCLAB_WORK/xfr.in" bs=1M count=8 status=none
xfr_bg_to "$IPCLAB_WORK/xfr.out" shm_reader --stream -k "$XFR_KEY"
xfr_run_from "$IPCLAB_WORK/xfr.in" shm_writer --stream -k "$XFR_KEY"
wait_bg
run cmp "$IPCLAB_WORK/xfr.in" "$IPCLAB_WORK/xfr.out"
