# lab/03-shmem-flock/tour.sh: the shmem library (seed 004), driven through shmem_tool, then the
# seed's example server and client in C (server.c, client.c). Sourced by lab/tour.sh, which
# provides say, run, run_bg, wait_bg, expect_output, expect_lines, wait_for, new_key_file,
# track_key and $IPCLAB_WORK. About 5 seconds; removes what it creates.

SHMEM_KEY=$(new_key_file shmem.key)
track_key "$(ftok_key "$SHMEM_KEY" 77)" # 77 = 'M', SHMEM_PROJ_ID
SHMEM_HEX=$(printf '0x%08x' $(( $(ftok_key "$SHMEM_KEY" 77) & 0xffffffff )))

say "A segment named by a key file: write creates both (64 bytes), read copies it all out"
run shmem_tool write "$SHMEM_KEY" --size 64 hello from the tour
expect_output "hello from the tour" shmem_tool read "$SHMEM_KEY" --text
run shmem_tool stat "$SHMEM_KEY"

say "One process holds LOCK_EX for a second; a reader waits for it, then reads"
run_bg shmem_tool hold "$SHMEM_KEY" --exclusive --for 1
# flock(1) takes the same flock(2) lock: it fails at once while the holder has it.
locked() { ! flock --nonblock "$SHMEM_KEY" true; }
wait_for 5 locked || tour_failed "the holder never took the lock"
expect_output "hello from the tour" shmem_tool read "$SHMEM_KEY" --text
wait_bg

say "A holder killed with SIGKILL: the kernel drops its lock, nobody stays blocked"
run_bg shmem_tool hold "$SHMEM_KEY" --exclusive
wait_for 5 locked || tour_failed "the holder never took the lock"

say "ipcview --once: the holder, found in /proc/locks by the key file's device and inode, next to the segment it guards (in class, run ipcview --key $SHMEM_HEX in a second terminal and watch the flock line as the holder dies)"
expect_lines ipcview --once --key "$SHMEM_HEX" -- \
    "  key file $(realpath "$SHMEM_KEY")" \
    "  flock LOCK_EX held by pid $BG_PID shmem_tool" \
    "  content: text \"hello from the tour\""
run kill -KILL "$BG_PID"
wait "$BG_PID" 2>/dev/null
run shmem_tool write "$SHMEM_KEY" survived the crash!
expect_output "survived the crash!" shmem_tool read "$SHMEM_KEY" --text

say "No torn reads: 2 writer and 3 reader threads, every read checked to be one whole write"
run shmem_tool delete "$SHMEM_KEY"
run shmem_tool hammer "$SHMEM_KEY" --size 4096 --writers 2 --readers 3 --count 2000
run shmem_tool delete "$SHMEM_KEY"

# The seed is a C library: the same calls from C, through include/shmem.h and libipclab.a.
if command -v cc >/dev/null; then
    say "The seed's example server and client in C, on include/shmem.h and libipclab.a (cargo build --release made it), built with one cc line each"
    # The library where cargo put it: target/release, shown relative to the project (we are there).
    lib="${BIN#"$IPCLAB_ROOT"/}/libipclab.a"
    run cc -Iinclude lab/03-shmem-flock/server.c "$lib" -lpthread -ldl -lm -o "$IPCLAB_WORK/shmem_server_c"
    run cc -Iinclude lab/03-shmem-flock/client.c "$lib" -lpthread -ldl -lm -o "$IPCLAB_WORK/shmem_client_c"
    SHMEM_C_KEY=$(new_key_file shmem_c.key)
    track_key "$(ftok_key "$SHMEM_C_KEY" 77)"

    say "The C server creates the segment and publishes a record every 100 ms; the C client reads whole records (LOCK_SH) while it writes (LOCK_EX)"
    run_bg "$IPCLAB_WORK/shmem_server_c" "$SHMEM_C_KEY" --interval 100 --count 8
    segment_up() { shmem_tool stat "$SHMEM_C_KEY" >/dev/null 2>&1; }
    wait_for 5 segment_up || tour_failed "the C server never created its segment"
    run "$IPCLAB_WORK/shmem_client_c" "$SHMEM_C_KEY" --count 3 --interval 150
    run shmem_tool stat "$SHMEM_C_KEY"

    say "The server created the segment, so it deletes it when it stops; the client only attached, so it removed nothing"
    wait_bg
    gone() { ! shmem_tool stat "$SHMEM_C_KEY" >/dev/null 2>&1; }
    wait_for 5 gone || tour_failed "the C server left its segment behind"
else
    say "No C compiler (cc) on this machine: the C examples (server.c, client.c) are skipped"
fi
