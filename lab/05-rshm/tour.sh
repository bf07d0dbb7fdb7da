# lab/05-rshm/tour.sh: the tour's steps for RSHM, shared memory across nodes (seed 000).
# Sourced by lab/tour.sh, which provides say, run, run_bg, expect_output, wait_bg and the
# key tracking.

# Two ports; each node's queue (0x52530000 + port), change gates (0x52470000 + port) and
# alive set (0x52410000 + port) are tracked.
RSHM_A=$(free_port 0x52530000 0x52470000 0x52410000)
RSHM_B=$(free_port 0x52530000 0x52470000 0x52410000)

say "05: RSHM. Two nodes, each an rshm_server: local programs reach their node through a message queue (key 0x52530000 + port), the nodes reach each other through TCP. Here both nodes run on this machine, on ports $RSHM_A and $RSHM_B."
# The two nodes' cluster secret: any bytes, in a file only we may read (mode 0600). Nodes
# that do not share it never connect (a real group copies one file to every machine).
RSHM_SECRET="$IPCLAB_WORK/rshm-secret"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RSHM_SECRET")
run_bg rshm_server --listen "$RSHM_A" --peer "$RSHM_B" --secret "$RSHM_SECRET"
RSHM_PID_A=$BG_PID
run_bg rshm_server --listen "$RSHM_B" --peer "$RSHM_A" --secret "$RSHM_SECRET"
RSHM_PID_B=$BG_PID
rshm_up() { client --port "$1" ls 2>/dev/null | head -n 1 | grep -q ' up$'; }
wait_for 5 rshm_up "$RSHM_A" && wait_for 5 rshm_up "$RSHM_B" || tour_failed "the nodes did not connect"

say "P1 on node A: rshmget creates the segment (A owns it, B makes a replica), rshmat, the text goes in, rshmChanged sends it to B and returns when B has applied it."
run client --port "$RSHM_A" write 0x5 "hello across nodes"

say "P2 on node B reads its own replica: the bytes came over TCP, never through a shared segment."
expect_output "hello across nodes" client --port "$RSHM_B" read 0x5

say "Each node's table, like ipcs: the same rshmid, owner and attach count everywhere; each node its own shmid."
run client --port "$RSHM_B" ls

say "ipcview --once asks node B for its table: its peer, and the replica of segment 0x5 (in class, run ipcview --port $RSHM_B in a second terminal)."
expect_lines ipcview --once --port "$RSHM_B" -- \
    "  peer 127.0.0.1:$RSHM_A up"

say "Diffs: a 1 MiB segment, then a 1-byte change. Only the changed 8-byte word travels: the 'sent' column shows the bytes of the last update on the wire (54, not a megabyte)."
run client --port "$RSHM_A" write 0x6 "hello" --size 1048576
run client --port "$RSHM_A" write 0x6 "hellp"
run client --port "$RSHM_A" ls
run client --port "$RSHM_A" rm 0x6

say "rm on B: the removal goes to the owner, A, which marks the segment on every node; nobody is attached, so it is destroyed everywhere at once."
run client --port "$RSHM_B" rm 0x5
run client --port "$RSHM_A" ls

say "SIGTERM: each server tells its peer it is leaving, removes its replicas and its queue, and exits 0."
run kill -TERM "$RSHM_PID_A" "$RSHM_PID_B"
wait "$RSHM_PID_A" || tour_failed "node A exited with $?"
wait "$RSHM_PID_B" || tour_failed "node B exited with $?"
