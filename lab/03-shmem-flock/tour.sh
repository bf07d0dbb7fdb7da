# lab/03-shmem-flock/tour.sh: the shmem library (seed 004), driven through shmem_tool.
# Sourced by lab/tour.sh, which provides say, run, run_bg, wait_bg, expect_output, wait_for,
# new_key_file, track_key and $IPCLAB_WORK. About 3 seconds; removes what it creates.

SHMEM_KEY=$(new_key_file shmem.key)
track_key "$(ftok_key "$SHMEM_KEY" 77)" # 77 = 'M', SHMEM_PROJ_ID

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
run kill -KILL "$BG_PID"
wait "$BG_PID" 2>/dev/null
run shmem_tool write "$SHMEM_KEY" survived the crash!
expect_output "survived the crash!" shmem_tool read "$SHMEM_KEY" --text

say "No torn reads: 2 writer and 3 reader threads, every read checked to be one whole write"
run shmem_tool delete "$SHMEM_KEY"
run shmem_tool hammer "$SHMEM_KEY" --size 4096 --writers 2 --readers 3 --count 2000
run shmem_tool delete "$SHMEM_KEY"
