# lab/04-dipc/tour.sh: the tour's dipc steps (sourced by lab/tour.sh, which provides say, run,
# run_line, expect_output, track_key, track_pid and $IPCLAB_WORK). A server on a free port, a
# few requests, the objects under the port's key, a refused second server, and dipcrm.

say "dipc (seed 001): mailboxes in one shm segment, a fair readers-writer lock of semaphores per box"

# A port nobody listens on, with no object under its key (0x44500000 | port).
DIPC_PORT=$(free_port 0x44500000)

say "Start the server: it checks its arguments, becomes a daemon, and prints its pid once it listens"
STEP=$((STEP + 1))
printf '$ dipc 4 1 %s 1\n' "$DIPC_PORT"
out=$(dipc 4 1 "$DIPC_PORT" 1 2>&1) || tour_failed "dipc 4 1 $DIPC_PORT 1"
printf '%s\n' "$out"
track_pid "${out##* }"

say "One-shot requests: w stores a message, r prints it"
expect_output "ok 11" dipc_client "$DIPC_PORT" w 1 "hello there"
expect_output "hello there" dipc_client "$DIPC_PORT" r 1

say "ipcview --once: the server's objects decoded (in class, run ipcview --port $DIPC_PORT in a second terminal and watch the turnstile live)"
DIPC_FREE="0 readers inside, turnstile open, 0 waiting at the turnstile, 0 writer waiting for the readers to leave"
expect_lines ipcview --once --port "$DIPC_PORT" -- \
    "  box 0: empty, $DIPC_FREE" \
    "  box 1: 11 bytes, $DIPC_FREE"

say "The datagram by hand (bash's /dev/tcp): pipelined requests, a bad box, q closes"
run_line "exec 3<>/dev/tcp/127.0.0.1/$DIPC_PORT; printf 'r 1\nw 2 3\nabcr 9\nq\n' >&3; cat <&3"

say "Both objects live under the port's key 0x$(printf '%08x' $((0x44500000 | DIPC_PORT)))"
run_line "ipcs -m -s | grep -i 0x$(printf '%08x' $((0x44500000 | DIPC_PORT)))"

say "A second server on the same port is refused, and the first keeps serving"
STEP=$((STEP + 1))
printf '$ dipc 4 1 %s 1\n' "$DIPC_PORT"
if dipc 4 1 "$DIPC_PORT" 1; then tour_failed "a second dipc started on port $DIPC_PORT"; fi
expect_output "hello there" dipc_client "$DIPC_PORT" r 1

say "dipcrm stops the server (SIGTERM) and reports what was removed"
run dipcrm "$DIPC_PORT"
