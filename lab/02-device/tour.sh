# lab/02-device/tour.sh: the tour's steps for the simulated device (seed 003). Sourced by
# lab/tour.sh, which provides say, run, run_bg, expect_output, expect_lines, wait_bg and the key
# tracking.

say "02: a simulated I/O device. Its registers are a shared memory segment; a semaphore set guards them and carries commands. The device owns both and removes them on exit."
DEV_KEY=$(new_key_file device.key)
track_key "$(ftok_key "$DEV_KEY" 68)"
DEV_HEX=$(key_hex "$(ftok_key "$DEV_KEY" 68)")
run_bg device -k "$DEV_KEY" --channels 2 --ramp 20 --period 50
wait_for 5 bash -c "device_client -k '$DEV_KEY' get 0 >/dev/null 2>&1" || tour_failed "device did not start"

say "A command round trip: take the command slot, write the request, post CMD, wait for DONE."
expect_output ok device_client -k "$DEV_KEY" set 0 2

say "The readback ramps toward the setpoint (20 units/s). watch sleeps on the update gate and prints the channel, read under the lock, once per device update."
run device_client -k "$DEV_KEY" watch 0 --count 3
wait_for 5 bash -c "device_client -k '$DEV_KEY' get 0 | grep -q status=ok" || tour_failed "no settle"
expect_output "channel=0 setpoint=2.000 readback=2.000 status=ok" device_client -k "$DEV_KEY" get 0

say "ipcview --once: the same registers read from the segment without sending a command, the command slot, and the five semaphores by name (in class, run ipcview --key $DEV_HEX in a second terminal and watch the readback ramp)"
expect_lines ipcview --once --key "$DEV_HEX" -- \
    "  channel 0 setpoint 2.000 readback 2.000 ok" \
    "  channel 1 setpoint 0.000 readback 0.000 ok" \
    "  watchers waiting for an update: 0"

say "detach --stat: the kernel's shmid_ds for the segment, and this machine's limits next to the seed's Linux 3.2 table."
run detach -k "$DEV_KEY" --stat

say "detach (the operator's tool) marks the objects for removal; the device notices and exits."
run detach -k "$DEV_KEY"
wait_bg
