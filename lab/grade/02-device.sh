#!/usr/bin/env bash
# lab/grade/02-device.sh: grades the simulated device (seed 003): device, device_client, detach.
#
#     lab/grade/02-device.sh [BINDIR]
#
# Uses only the programs' documented command lines, so it can grade a student's build. Every
# check starts its own device on its own key file, and stops it; the harness removes whatever a
# failing check leaves behind.

source "$(dirname "$0")/lib.sh"
grade_init "${1:-}" device device_client detach

PROJ=68 # device's default -i ('D')

# start_device NAME ARGS...: a device on key file NAME, output in NAME.out; waits for its
# first line. Sets DEV_PID and KF (the key file).
start_device() {
    local name=$1
    shift
    KF=$(new_key_file "$name")
    track_key "$(ftok_key "$KF" "$PROJ")"
    "$BIN/device" -k "$KF" "$@" >"$KF.out" 2>"$KF.err" &
    DEV_PID=$!
    track_pid "$DEV_PID"
    wait_for 10 grep -q '^device: key 0x' "$KF.out" || fail "device did not start: $(cat "$KF.err")"
}

# stop_device: SIGTERM, then the device must exit 0 within 5 s.
stop_device() {
    kill -TERM "$DEV_PID" 2>/dev/null
    exit_within "$DEV_PID" 5 || fail "device did not exit within 5 s of SIGTERM"
    [ "$RC" = 0 ] || fail "device exited with $RC after SIGTERM, expected 0"
}

client() { "$BIN/device_client" -k "$KF" "$@"; }

# wait_attached N: until detach --stat shows N attachments (the device and N-1 clients).
wait_attached() {
    wait_for 10 bash -c "'$BIN/detach' -k '$KF' --stat 2>/dev/null | grep -Eq 'shm_nattch +$1\$'" ||
        fail "expected $1 processes attached: $("$BIN/detach" -k "$KF" --stat 2>&1 | grep nattch)"
}

set_get() {
    start_device setget --ramp 0
    local out
    out=$(client set 1 2.5) || fail "set failed"
    [ "$out" = ok ] || fail "set printed '$out', expected 'ok'"
    out=$(client get 1) || fail "get failed"
    [[ "$out" == *"setpoint=2.500 readback=2.500 status=ok"* ]] ||
        fail "get printed '$out', expected ...setpoint=2.500 readback=2.500 status=ok"
    out=$(client reset) && [ "$out" = ok ] || fail "reset printed '$out'"
    out=$(client get 1)
    [[ "$out" == *"setpoint=0.000 readback=0.000"* ]] || fail "after reset: '$out'"
    stop_device
}

watch_updates() {
    start_device watch --period 20
    local out n
    out=$(timeout 10 "$BIN/device_client" -k "$KF" watch 0 --count 5) || fail "watch failed or hung"
    n=$(grep -c 'setpoint=.* readback=.* status=' <<<"$out")
    [ "$n" = 5 ] || fail "watch --count 5 printed $n channel lines: $out"
    stop_device
}

ramp() {
    start_device ramp --ramp 10 --period 20
    client set 0 3 >/dev/null || fail "set failed"
    local out
    out=$(client get 0)
    [[ "$out" == *"setpoint=3.000"*"status=ramping"* ]] || fail "right after set 0 3: '$out'"
    wait_for 5 bash -c "'$BIN/device_client' -k '$KF' get 0 | grep -q 'readback=3.000 status=ok'" ||
        fail "readback did not reach 3 at 10 units/s: $(client get 0)"
    stop_device
}

bad_channel() {
    start_device badch --channels 2
    local err rc
    err=$(client get 5 2>&1 >/dev/null)
    rc=$?
    [ "$rc" = 1 ] || fail "get 5 on a 2-channel device exited $rc, expected 1"
    [[ "$err" == "device_client: get: channel 5 out of range"* ]] || fail "get 5 said: $err"
    client set 1 1 >/dev/null || fail "the device stopped serving after a bad channel"
    stop_device
}

non_number() {
    start_device nonnum
    local err rc
    err=$(client set 0 volts 2>&1 >/dev/null)
    rc=$?
    [ "$rc" = 1 ] || fail "set 0 volts exited $rc, expected 1"
    [[ "$err" == "device_client: set: 'volts' is not a number" ]] || fail "set 0 volts said: $err"
    err=$(client get zero 2>&1 >/dev/null)
    [ $? = 1 ] || fail "get zero did not exit 1"
    client set 0 >/dev/null 2>&1
    [ $? = 2 ] || fail "set with a missing value is a usage error (exit 2)"
    stop_device
}

no_device() {
    local kf err rc
    kf=$(new_key_file nodev)
    err=$("$BIN/device_client" -k "$kf" get 0 2>&1 >/dev/null)
    rc=$?
    [ "$rc" = 1 ] || fail "get with no device exited $rc, expected 1"
    [[ "$err" == "device_client: no device running"* ]] || fail "get with no device said: $err"
}

device_death() {
    start_device death --period 10000
    "$BIN/device_client" -k "$KF" watch 0 --timeout 60 >/dev/null 2>"$KF.watch" &
    local w=$! start err
    track_pid "$w"
    wait_attached 2
    start=$SECONDS
    kill -KILL "$DEV_PID"
    exit_within "$DEV_PID" 5
    exit_within "$w" 15 || fail "the watcher still runs 15 s after the device died"
    local rc=$RC
    ((SECONDS - start <= 10)) || fail "the watcher took $((SECONDS - start)) s to notice"
    [ "$rc" = 1 ] || fail "the watcher exited $rc after the device died, expected 1"
    err=$(cat "$KF.watch")
    [[ "$err" == *"died"* ]] || fail "the watcher said: $err"
    # SIGKILL removed nothing: detach is the way to clear it.
    "$BIN/detach" -k "$KF" >/dev/null || fail "detach could not remove the dead device's objects"
}

detach_stat() {
    start_device stat --channels 4
    local out f
    out=$("$BIN/detach" -k "$KF" --stat) || fail "detach --stat failed"
    for f in shm_segsz shm_cpid shm_lpid shm_nattch shm_atime shm_dtime shm_ctime \
        SHMMAX SHMMIN SHMMNI SHMALL; do
        grep -q "$f" <<<"$out" || fail "detach --stat shows no $f"
    done
    grep -q "shm_cpid *$DEV_PID\b" <<<"$out" || fail "shm_cpid is not the device's pid $DEV_PID"
    grep -q "SHMMNI.*$(cat /proc/sys/kernel/shmmni)" <<<"$out" || fail "SHMMNI is not the machine's"
    grep -q "SHMMAX.*32768" <<<"$out" || fail "the seed's Linux 3.2 value of SHMMAX is missing"
    stop_device
}

detach_removal() {
    start_device rm --period 50
    "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>"$KF.watch" &
    local w=$! rc
    track_pid "$w"
    wait_attached 2
    "$BIN/detach" -k "$KF" >/dev/null || fail "detach failed"
    exit_within "$DEV_PID" 5 || fail "device still runs after detach"
    rc=$RC
    [ "$rc" = 0 ] || fail "device exited $rc after detach, expected 0"
    grep -q 'removed' "$KF.out" || fail "device gave no message: $(cat "$KF.out")"
    exit_within "$w" 5 || fail "watcher still runs 5 s after detach"
    rc=$RC
    [ "$rc" = 1 ] || fail "watcher exited $rc after detach, expected 1"
    grep -q 'removed by detach' "$KF.watch" || fail "watcher said: $(cat "$KF.watch")"
    [ -z "$(objects_with_key "$(ftok_key "$KF" "$PROJ")")" ] || fail "objects remain after detach"
}

sigterm_cleanup() {
    start_device term
    local key
    key=$(ftok_key "$KF" "$PROJ")
    [ -n "$(objects_with_key "$key")" ] || fail "no objects while the device runs?"
    stop_device
    [ -z "$(objects_with_key "$key")" ] || fail "objects left after SIGTERM: $(objects_with_key "$key")"
    start_device int
    kill -INT "$DEV_PID"
    exit_within "$DEV_PID" 5 || fail "device did not exit within 5 s of SIGINT"
    [ "$RC" = 0 ] || fail "device exited $RC after SIGINT, expected 0"
    [ -z "$(objects_with_key "$(ftok_key "$KF" "$PROJ")")" ] || fail "objects left after SIGINT"
}

check set-get set_get
check watch watch_updates
check ramp ramp
check bad-channel bad_channel
check non-number non_number
check no-device no_device
check device-death device_death
check detach-stat detach_stat
check detach-removal detach_removal
check sigterm-cleanup sigterm_cleanup
check no-leaks check_no_leaks
grade_finish
