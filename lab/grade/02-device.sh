#!/usr/bin/env bash
# lab/grade/02-device.sh: grades the simulated device (seed 003): device, device_client, detach.
#
#     lab/grade/02-device.sh [BINDIR] [--json FILE]
#
# Uses only the programs' documented command lines, so it can grade a student's build. Every
# check starts its own device on its own key file, and stops it; the harness removes whatever a
# failing check leaves behind. Output lines are compared whole, field values included.
#
# What is graded (behaviour -> check, points):
#   the start line names the key, channels and the device's own pid; -i
#     reaches the key of the device, its clients and detach                   -> start-line (1)
#   set prints ok; get prints the channel's exact line; reset zeroes          -> set-get (2)
#   channels 0 and N-1 work, N is refused (get, set, watch), at N=2 and 256;
#     --channels 0 and 257 are usage errors                                    -> channel-boundaries (3)
#   values up to +-1e9 are accepted, beyond and nan/non-numbers refused       -> value-limits (2)
#   watch prints one line per update, rising update numbers, the channel      -> watch (2)
#   the readback ramps toward the setpoint at --ramp per second, then ok      -> ramp (2)
#   a command is answered at once, even with a long --period                  -> prompt-commands (1)
#   no device: a clear error, exit 1                                          -> no-device (1)
#   a second device on the key is refused and disturbs nothing                -> second-device-refused (1)
#   a client killed by SIGKILL in the middle of a command: the next commands
#     work (SEM_UNDO gives the slot back; a stale reply fools nobody)         -> killed-client-mid-command (3)
#   a device killed by SIGKILL: a waiting watcher says so within seconds;
#     detach clears what it left, and so does a new device on the key, which
#     says it recycled the dead device's objects and then serves              -> device-death (2)
#   detach --stat prints shmid_ds values: size, mode 0600 (both objects),
#     creator, last pid, attach count, atime/dtime/ctime, the machine's
#     limits, and each semaphore's value under its name, at rest and while a
#     command waits for a frozen device (slot=0 cmd=1)                        -> detach-stat-values (3)
#   detach removes the objects; the device exits 0, its watcher exits 1      -> detach-removal (2)
#   ipcrm -s or -m under a running device: the device exits 0 saying they
#     were removed by someone else, its watcher exits 1 saying so; neither
#     blames detach; nothing is left on the key                               -> objects-removed-under-it (2)
#   SIGTERM and SIGINT to the device itself: exit 0, "signal N: removed",
#     nothing left on its key, a waiting watcher learns it stopped            -> signal-cleanup (3)
#   Ctrl-C ends a watch quietly (exit 130), the device none the worse         -> watch-ctrl-c (1)
#   no torn channel: with --ramp 0 every watched line has readback=setpoint  -> no-torn-channel (1)
#   usage errors exit 2, also --period and --ramp out of range               -> usage (1)
#   nothing is left on any key the grader used                                -> no-leaks (1)

source "$(dirname "$0")/lib.sh"
grade_args "$@"
grade_init "$GRADE_BINDIR" device device_client detach

PROJ=68 # device's default -i ('D')

# start_device NAME ARGS...: a device on key file NAME, output in NAME.out; waits for its
# first line. Sets DEV_PID, KF (the key file) and KEY.
start_device() {
    local name=$1
    shift
    KF=$(new_key_file "$name")
    KEY=$(ftok_key "$KF" "$PROJ")
    track_key "$KEY"
    # Its status lines, on stderr or stdout: one file, graded by what the lines say.
    "$BIN/device" -k "$KF" "$@" >"$KF.out" 2>&1 &
    DEV_PID=$!
    track_pid "$DEV_PID"
    wait_for 10 grep -q '^device: key 0x' "$KF.out" || fail "device did not start: $(cat "$KF.out")"
}

# stop_device [SIG]: the signal (TERM by default), then the device must exit 0 within 5 s.
stop_device() {
    kill -"${1:-TERM}" "$DEV_PID" 2>/dev/null
    exit_within "$DEV_PID" 5 || fail "device did not exit within 5 s of SIG${1:-TERM}"
    [ "$RC" = 0 ] || fail "device exited with $RC after SIG${1:-TERM}, expected 0"
}

client() { timeout 20 "$BIN/device_client" -k "$KF" "$@"; }

# expect WANT ARGS...: device_client ARGS prints exactly the line WANT on stdout and exits 0.
expect() {
    local want=$1
    shift
    client "$@" >exp.out 2>exp.err || fail "device_client $* exited $?: $(cat exp.err)"
    printf '%s\n' "$want" >exp.want
    cmp -s exp.out exp.want || fail "device_client $* printed '$(cat exp.out)', expected '$want'"
}

# refused RC PREFIX ARGS...: device_client ARGS exits RC with stderr starting with PREFIX.
refused() {
    local rc=$1 prefix=$2
    shift 2
    client "$@" >ref.out 2>ref.err
    local got=$?
    [ "$got" = "$rc" ] || fail "device_client $* exited $got, expected $rc"
    [[ "$(cat ref.err)" == "$prefix"* ]] || fail "device_client $* said: $(cat ref.err)"
    [ ! -s ref.out ] || fail "device_client $* printed on stdout: $(cat ref.out)"
}

# wait_attached N: until detach --stat shows N attachments (the device and N-1 clients).
wait_attached() {
    wait_for 10 bash -c "'$BIN/detach' -k '$KF' --stat 2>/dev/null | grep -Eq '^  shm_nattch +$1\$'" ||
        fail "expected $1 processes attached: $("$BIN/detach" -k "$KF" --stat 2>&1 | grep nattch)"
}

nothing_left() {
    [ -z "$(objects_with_key "$KEY")" ] || fail "objects left on key $KEY: $(objects_with_key "$KEY" | tr '\n' ' ')"
}

start_line() {
    start_device sl --channels 3 --period 50 --ramp 2
    local line
    line=$(grep -m 1 '^device: key' "$KF.out")
    [[ "$line" =~ ^device:\ key\ 0x([0-9a-f]{8})\ shmid\ [0-9]+\ semid\ [0-9]+\ channels\ 3\ period\ 50\ ms\ ramp\ 2\ units/s\ pid\ ([0-9]+)$ ]] ||
        fail "device's first line: '$line'"
    [ "0x${BASH_REMATCH[1]}" = "$(key_hex "$KEY")" ] || fail "the key printed is not ftok(-k, 68): $line"
    [ "${BASH_REMATCH[2]}" = "$DEV_PID" ] || fail "the pid printed is not the device's ($DEV_PID): $line"
    [ -n "$(objects_with_key "$KEY")" ] || fail "no object on the key the device printed"
    stop_device
    # -i: the device, its clients and detach all use ftok(-k, -i).
    local key7
    key7=$(ftok_key "$KF" 7)
    track_key "$key7"
    "$BIN/device" -k "$KF" -i 7 --ramp 0 >"$KF.out7" 2>&1 &
    DEV_PID=$!
    track_pid "$DEV_PID"
    wait_for 10 grep -q '^device: key 0x' "$KF.out7" || fail "device -i 7 did not start: $(cat "$KF.out7")"
    line=$(grep -m 1 '^device: key' "$KF.out7")
    [[ "$line" =~ ^device:\ key\ 0x([0-9a-f]{8})\  ]] && [ "0x${BASH_REMATCH[1]}" = "$(key_hex "$key7")" ] ||
        fail "device -i 7 printed '$line', not the key ftok(-k, 7)"
    [ -n "$(objects_with_key "$key7")" ] || fail "device -i 7 made no object with the key ftok(-k, 7)"
    [ -z "$(objects_with_key "$KEY")" ] || fail "device -i 7 made objects with the key of -i 68"
    expect ok set 0 1 -i 7
    expect "channel=0 setpoint=1.000 readback=1.000 status=ok" get 0 --proj-id 7
    timeout 10 "$BIN/detach" -k "$KF" -i 7 --stat >sl.stat 2>&1 || fail "detach -i 7 --stat failed: $(cat sl.stat)"
    grep -q "^  shm_cpid    $DEV_PID " sl.stat || fail "detach -i 7 --stat does not show device $DEV_PID: $(grep cpid sl.stat)"
    stop_device
    [ -z "$(objects_with_key "$key7")" ] || fail "device -i 7 left objects"
}

set_get() {
    start_device setget --ramp 0
    expect ok set 1 2.5
    expect "channel=1 setpoint=2.500 readback=2.500 status=ok" get 1
    expect "channel=0 setpoint=0.000 readback=0.000 status=ok" get 0
    expect ok set 3 -7.125
    expect "channel=3 setpoint=-7.125 readback=-7.125 status=ok" get 3
    expect ok reset
    expect "channel=1 setpoint=0.000 readback=0.000 status=ok" get 1
    expect "channel=3 setpoint=0.000 readback=0.000 status=ok" get 3
    stop_device
}

channel_boundaries() {
    local rc
    start_device two --channels 2 --ramp 0
    expect ok set 1 1
    expect "channel=1 setpoint=1.000 readback=1.000 status=ok" get 1
    expect "channel=0 setpoint=0.000 readback=0.000 status=ok" get 0
    refused 1 "device_client: get: channel 2 out of range" get 2
    refused 1 "device_client: set: channel 2 out of range" set 2 1
    refused 1 "device_client: watch: channel 2 out of range" watch 2 --count 1
    refused 1 "device_client: get: channel 5 out of range" get 5
    expect ok set 0 2
    stop_device
    start_device max --channels 256 --ramp 0
    expect ok set 255 4
    expect "channel=255 setpoint=4.000 readback=4.000 status=ok" get 255
    refused 1 "device_client: get: channel 256 out of range" get 256
    refused 1 "device_client: set: channel 256 out of range" set 256 1
    stop_device
    local kf
    kf=$(new_key_file nodev)
    for n in 0 257; do
        timeout 10 "$BIN/device" -k "$kf" --channels $n >/dev/null 2>&1
        rc=$?
        [ "$rc" = 2 ] || fail "device --channels $n exited $rc, expected 2"
    done
    [ -z "$(objects_with_key "$(ftok_key "$kf" "$PROJ")")" ] || fail "a refused device left objects"
}

value_limits() {
    start_device vl --ramp 0
    expect ok set 0 1e9
    expect "channel=0 setpoint=1000000000.000 readback=1000000000.000 status=ok" get 0
    expect ok set 1 -1000000000
    refused 1 "device_client: set: the device refused the value" set 2 1000000001
    refused 1 "device_client: set: the device refused the value" set 2 -1000000001
    refused 2 "device_client: set: 'volts' is not a number" set 2 volts
    refused 2 "device_client: set: 'nan' is not a number" set 2 nan
    refused 2 "device_client: get: 'zero' is not a channel number" get zero
    expect "channel=2 setpoint=0.000 readback=0.000 status=ok" get 2
    stop_device
}

watch_updates() {
    start_device watch --period 20 --channels 2
    client watch 1 --count 5 >w.out 2>w.err || fail "watch failed or hung: $(cat w.err)"
    [ "$(wc -l <w.out)" = 5 ] || fail "watch --count 5 printed $(wc -l <w.out) lines"
    awk 'BEGIN { ok = 1 }
        !/^update=[0-9]+ channel=1 setpoint=-?[0-9.]+ readback=-?[0-9.]+ status=[a-z]+$/ { ok = 0 }
        { split($1, u, "="); if (NR > 1 && u[2] + 0 <= prev + 0) ok = 0; prev = u[2] }
        END { exit !ok }' w.out || fail "watch lines are not successive updates of channel 1: $(tr '\n' '|' <w.out)"
    stop_device
}

ramp() {
    local start ms
    start_device ramp --ramp 10 --period 20
    expect ok set 0 3
    client get 0 >r.out
    [[ "$(cat r.out)" =~ ^channel=0\ setpoint=3.000\ readback=[0-2]\.[0-9]+\ status=ramping$ ]] ||
        fail "right after set 0 3 at 10 units/s: '$(cat r.out)'"
    start=$(date +%s%N)
    client watch 0 --count 6 >r.watch || fail "watch failed"
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^readback=/) { split($i, a, "="); v = a[2] + 0 } }
        NR > 1 && (v < prev || v - prev > 1.5) { bad = 1 } { prev = v } END { exit bad }' r.watch ||
        fail "the readback does not rise steadily by about 10 units/s * 20 ms: $(tr '\n' '|' <r.watch)"
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^readback=/) { split($i, a, "="); v = a[2] + 0 } }
        v > 0 && v < 3 { n++ } END { exit n < 3 }' r.watch ||
        fail "fewer than 3 of 6 updates on the way from 0 to 3 at 10 units/s: $(tr '\n' '|' <r.watch)"
    wait_for 5 bash -c "'$BIN/device_client' -k '$KF' get 0 | grep -qx 'channel=0 setpoint=3.000 readback=3.000 status=ok'" ||
        fail "readback did not reach 3 and status ok at 10 units/s: $(client get 0)"
    ms=$((($(date +%s%N) - start) / 1000000))
    ((ms >= 150)) || fail "the ramp from 0 to 3 at 10 units/s took only $ms ms"
    # Down again, with a negative target.
    expect ok set 0 -1
    wait_for 5 bash -c "'$BIN/device_client' -k '$KF' get 0 | grep -qx 'channel=0 setpoint=-1.000 readback=-1.000 status=ok'" ||
        fail "readback did not ramp down to -1: $(client get 0)"
    stop_device
}

prompt_commands() {
    local start ms
    start_device prompt --period 10000 --ramp 0
    start=$(date +%s%N)
    expect ok set 0 1
    expect "channel=0 setpoint=1.000 readback=1.000 status=ok" get 0
    ms=$((($(date +%s%N) - start) / 1000000))
    ((ms < 2000)) || fail "two commands took $ms ms with --period 10000: the device waits for its tick"
    stop_device
}

no_device() {
    KF=$(new_key_file nodev2)
    refused 1 "device_client: no device running" get 0
}

second_device() {
    start_device twice --ramp 0
    local rc
    timeout 10 "$BIN/device" -k "$KF" >sd.out 2>sd.err
    rc=$?
    [ "$rc" = 1 ] || fail "a second device on the key exited $rc, expected 1"
    [[ "$(cat sd.err)" == "device: a device (pid $DEV_PID) already runs with key 0x"* ]] ||
        fail "a second device said: $(cat sd.err)"
    expect ok set 0 5
    expect "channel=0 setpoint=5.000 readback=5.000 status=ok" get 0
    stop_device
    nothing_left
}

killed_client() {
    start_device victim --ramp 0
    # Freeze the device, so that the client takes the slot, posts its command and waits.
    freeze "$DEV_PID" || fail "the device did not stop on SIGSTOP"
    "$BIN/device_client" -k "$KF" set 0 7 --timeout 60 >/dev/null 2>&1 &
    local v=$!
    track_pid "$v"
    sleep 0.5
    kill -KILL "$v"
    exit_within "$v" 5
    kill -CONT "$DEV_PID"
    sleep 0.3
    expect ok set 1 3
    expect "channel=1 setpoint=3.000 readback=3.000 status=ok" get 1
    expect "channel=0 setpoint=7.000 readback=7.000 status=ok" get 0
    # And once more while the device runs: a client killed while it waits for the reply.
    freeze "$DEV_PID" || fail "the device did not stop on SIGSTOP"
    "$BIN/device_client" -k "$KF" get 1 --timeout 60 >/dev/null 2>&1 &
    v=$!
    track_pid "$v"
    sleep 0.3
    kill -KILL "$v"
    exit_within "$v" 5
    kill -CONT "$DEV_PID"
    expect ok set 2 4
    expect "channel=2 setpoint=4.000 readback=4.000 status=ok" get 2
    # A frozen device: a bounded client times out with exit 1.
    freeze "$DEV_PID" || fail "the device did not stop on SIGSTOP"
    local start ms
    start=$(date +%s%N)
    refused 1 "device_client: get: timed out" get 0 --timeout 0.5
    ms=$((($(date +%s%N) - start) / 1000000))
    kill -CONT "$DEV_PID"
    ((ms >= 400 && ms < 3000)) || fail "get --timeout 0.5 on a frozen device gave up after $ms ms"
    expect "channel=0 setpoint=7.000 readback=7.000 status=ok" get 0
    stop_device
    nothing_left
}

device_death() {
    start_device death --period 10000
    "$BIN/device_client" -k "$KF" watch 0 --timeout 60 >/dev/null 2>"$KF.watch" &
    local w=$! start rc
    track_pid "$w"
    wait_attached 2
    start=$SECONDS
    kill -KILL "$DEV_PID"
    exit_within "$DEV_PID" 5
    exit_within "$w" 15 || fail "the watcher still runs 15 s after the device died"
    rc=$RC
    ((SECONDS - start <= 5)) || fail "the watcher took $((SECONDS - start)) s to notice"
    [ "$rc" = 1 ] || fail "the watcher exited $rc after the device died, expected 1"
    [[ "$(cat "$KF.watch")" == "device_client: watch: the device (pid $DEV_PID) died"* ]] ||
        fail "the watcher said: $(cat "$KF.watch")"
    # SIGKILL removed nothing: detach is the way to clear it.
    [ -n "$(objects_with_key "$KEY")" ] || fail "a device killed by SIGKILL cannot have removed its objects"
    "$BIN/detach" -k "$KF" >/dev/null || fail "detach could not remove the dead device's objects"
    nothing_left
    # Killed again: a new device on the same key recycles what the dead one left, says so, and
    # serves.
    local old
    "$BIN/device" -k "$KF" >"$KF.out2" 2>&1 &
    old=$!
    track_pid "$old"
    wait_for 10 grep -q '^device: key 0x' "$KF.out2" || fail "device did not start again: $(cat "$KF.out2")"
    kill -KILL "$old"
    exit_within "$old" 5
    "$BIN/device" -k "$KF" --ramp 0 >"$KF.out3" 2>&1 &
    DEV_PID=$!
    track_pid "$DEV_PID"
    wait_for 10 grep -q '^device: key 0x' "$KF.out3" ||
        fail "a device on the key of one killed by SIGKILL did not start: $(tr '\n' ' ' <"$KF.out3")"
    grep -q "^device: recycling the objects of a device (pid $old) that is gone: removed shmid [0-9]* and semid [0-9]*" "$KF.out3" ||
        fail "the new device did not say it recycled the objects of pid $old: $(tr '\n' ' ' <"$KF.out3")"
    expect ok set 0 6
    expect "channel=0 setpoint=6.000 readback=6.000 status=ok" get 0
    stop_device
    nothing_left
}

# stat_line NAME: the value part of the detach --stat line NAME.
stat_line() { sed -n "s/^  $1 *//p" st.out; }

# recent TIME: "YYYY-MM-DD HH:MM:SS UTC" within 120 s of now.
recent() {
    local t
    t=$(date -u -d "${1% UTC}" +%s 2>/dev/null) || return 1
    (($(date +%s) - t < 120 && t - $(date +%s) < 5))
}

detach_stat() {
    local c shmmni t
    start_device stat --channels 4
    sleep 1.1 # so that a client's attach time differs from the device's
    timeout 10 "$BIN/detach" -k "$KF" --stat >st.out 2>st.err || fail "detach --stat failed: $(cat st.err)"
    grep -q "^segment key 0x[0-9a-f]\{8\} shmid [0-9]" st.out || fail "no 'segment key ... shmid' line"
    [[ "$(stat_line shm_perm)" =~ ^uid\ $(id -u)\ mode\ 0600$ ]] || fail "shm_perm is '$(stat_line shm_perm)', expected 'uid $(id -u) mode 0600'"
    [ "$(modes_with_key "$KEY" | tr '\n' ' ')" = "sem 600 shm 600 " ] ||
        fail "the device's objects have modes '$(modes_with_key "$KEY" | tr '\n' ' ')', expected 600 for both"
    [ "$(stat_line shm_segsz)" = "224 bytes" ] || fail "shm_segsz for 4 channels is '$(stat_line shm_segsz)', expected '224 bytes' (40+24+32+4*32)"
    [ "$(stat_line shm_cpid)" = "$DEV_PID (creator, alive)" ] || fail "shm_cpid is '$(stat_line shm_cpid)', expected '$DEV_PID (creator, alive)'"
    [ "$(stat_line shm_nattch)" = 1 ] || fail "shm_nattch with only the device attached is '$(stat_line shm_nattch)', expected 1"
    [ "$(stat_line shm_dtime)" = never ] || fail "shm_dtime before anyone detached is '$(stat_line shm_dtime)', expected never"
    recent "$(stat_line shm_atime)" || fail "shm_atime is '$(stat_line shm_atime)', expected the device's attach time"
    recent "$(stat_line shm_ctime)" || fail "shm_ctime is '$(stat_line shm_ctime)'"
    grep -q "^device status running, pid $DEV_PID (alive), 4 channels, update [0-9]*, period 100 ms, ramp 1 units/s$" st.out ||
        fail "the device line: $(grep '^device status' st.out)"
    grep -q "^semaphores semid [0-9]* nsems 5 .*: lock=1 slot=1 cmd=0 done=0 update=1$" st.out ||
        fail "the semaphore line: $(grep '^semaphores' st.out)"
    shmmni=$(cat /proc/sys/kernel/shmmni)
    grep -Eq "^  SHMMAX max bytes in one segment +$(cat /proc/sys/kernel/shmmax) +32768$" st.out || fail "SHMMAX: $(grep SHMMAX st.out)"
    grep -Eq "^  SHMMNI max segments, system wide +$shmmni +4096$" st.out || fail "SHMMNI: $(grep SHMMNI st.out)"
    grep -Eq "^  SHMALL max pages, system wide +$(cat /proc/sys/kernel/shmall) +-$" st.out || fail "SHMALL: $(grep SHMALL st.out)"
    grep -Eq "^  SHMMIN min bytes in one segment +1 \(fixed\) +1$" st.out || fail "SHMMIN: $(grep SHMMIN st.out)"
    # A client attaches and detaches: shm_lpid is its pid, shm_dtime its time; a watcher counts.
    "$BIN/device_client" -k "$KF" get 0 >/dev/null 2>&1 &
    c=$!
    exit_within "$c" 10 || fail "get hung"
    "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>&1 &
    local w=$!
    track_pid "$w"
    wait_attached 2
    timeout 10 "$BIN/detach" -k "$KF" --stat >st.out 2>st.err || fail "detach --stat failed"
    [ "$(stat_line shm_nattch)" = 2 ] || fail "shm_nattch with a watcher is '$(stat_line shm_nattch)', expected 2"
    # detach --stat attaches to read the header after it read shmid_ds: the next one sees
    # its pid as the last to attach or detach.
    "$BIN/detach" -k "$KF" --stat >/dev/null 2>&1 &
    local d=$!
    exit_within "$d" 10 || fail "detach --stat hung"
    timeout 10 "$BIN/detach" -k "$KF" --stat >st.out 2>st.err || fail "detach --stat failed"
    [ "$(stat_line shm_lpid)" = "$d (last shmat/shmdt)" ] || fail "shm_lpid after detach (pid $d) ran is '$(stat_line shm_lpid)', expected '$d (last shmat/shmdt)'"
    t=$(stat_line shm_dtime)
    recent "$t" || fail "shm_dtime after a client detached is '$t'"
    [ "$(stat_line shm_atime)" != "$(stat_line shm_ctime)" ] || fail "shm_atime did not move when the watcher attached (it equals shm_ctime)"
    kill -TERM "$w"
    exit_within "$w" 5
    stop_device
    nothing_left
    # Each value under its own name: freeze a device (no ticks for 10 s, so it is not frozen
    # holding the lock), and a client takes the slot and posts its command.
    start_device stat2 --period 10000 --ramp 0
    freeze "$DEV_PID" || fail "the device did not stop on SIGSTOP"
    "$BIN/device_client" -k "$KF" set 0 2 --timeout 30 >/dev/null 2>st.cerr &
    c=$!
    track_pid "$c"
    wait_for 5 bash -c "'$BIN/detach' -k '$KF' --stat 2>/dev/null | grep -q '^semaphores .* cmd=1 '" ||
        fail "while a command waits for a frozen device: $(timeout 10 "$BIN/detach" -k "$KF" --stat 2>&1 | grep '^semaphores')"
    timeout 10 "$BIN/detach" -k "$KF" --stat >st.out 2>st.err || fail "detach --stat failed"
    grep -q "^semaphores semid [0-9]* nsems 5 .*: lock=1 slot=0 cmd=1 done=0 update=1$" st.out ||
        fail "while a command waits for a frozen device the semaphore line is '$(grep '^semaphores' st.out)', expected lock=1 slot=0 cmd=1 done=0 update=1"
    kill -CONT "$DEV_PID"
    exit_within "$c" 10 || fail "the waiting client did not finish once the device went on"
    [ "$RC" = 0 ] || fail "the waiting client exited $RC: $(cat st.cerr)"
    stop_device
    nothing_left
}

detach_removal() {
    start_device rm --period 50
    "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>"$KF.watch" &
    local w=$! rc
    track_pid "$w"
    wait_attached 2
    timeout 10 "$BIN/detach" -k "$KF" >dr.out 2>&1 || fail "detach failed: $(cat dr.out)"
    grep -q "^detach: marked shmid [0-9]* and semid [0-9]* for removal" dr.out || fail "detach said: $(cat dr.out)"
    exit_within "$DEV_PID" 5 || fail "device still runs after detach"
    rc=$RC
    [ "$rc" = 0 ] || fail "device exited $rc after detach, expected 0"
    grep -q 'removed' "$KF.out" || fail "device gave no message: $(cat "$KF.out")"
    exit_within "$w" 5 || fail "watcher still runs 5 s after detach"
    rc=$RC
    [ "$rc" = 1 ] || fail "watcher exited $rc after detach, expected 1"
    grep -q 'removed by detach' "$KF.watch" || fail "watcher said: $(cat "$KF.watch")"
    nothing_left
    timeout 10 "$BIN/detach" -k "$KF" >/dev/null 2>&1
    rc=$?
    [ "$rc" = 1 ] || fail "detach with no device objects exited $rc, expected 1"
}

# ipcrm, not detach, removes a device's set, then (another device) its segment: the device must
# tell the two apart (detach writes "removed" in the status word first; ipcrm leaves it
# "running"), and so must a watcher waiting on it.
objects_removed_under_it() {
    local flag kind id w line
    for flag in -s -m; do
        start_device "ipcrm$flag" --period 20
        "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>"$KF.watch" &
        w=$!
        track_pid "$w"
        wait_attached 2
        kind=$([ "$flag" = -s ] && echo sem || echo shm)
        id=$(objects_with_key "$KEY" | awk -v k="$kind" '$1 == k { print $2 }')
        [ -n "$id" ] || fail "no $kind object on the device's key"
        ipcrm "$flag" "$id" || fail "ipcrm $flag $id failed"
        exit_within "$DEV_PID" 5 || fail "the device still runs 5 s after ipcrm $flag $id"
        [ "$RC" = 0 ] || fail "the device exited $RC after ipcrm $flag, expected 0"
        line=$(tail -n 1 "$KF.out")
        [[ "$line" == "device: "*" was removed by someone else (ipcrm?); stopping" && "$line" != *detach* ]] ||
            fail "after ipcrm $flag the device said last: '$line', expected '... was removed by someone else (ipcrm?); stopping'"
        exit_within "$w" 5 || fail "the watcher still runs 5 s after ipcrm $flag under its device"
        [ "$RC" = 1 ] || fail "the watcher exited $RC after ipcrm $flag under its device, expected 1"
        [[ "$(cat "$KF.watch")" == "device_client: watch: the device's (pid $DEV_PID) objects were removed by someone else (ipcrm?)"* ]] ||
            fail "after ipcrm $flag the watcher said: $(cat "$KF.watch")"
        ! grep -q detach "$KF.watch" || fail "after ipcrm $flag the watcher blamed detach: $(cat "$KF.watch")"
        nothing_left
    done
}

signal_cleanup() {
    local sig num w
    for sig in TERM INT; do
        start_device "sig$sig" --period 10000
        [ -n "$(objects_with_key "$KEY")" ] || fail "no objects while the device runs?"
        "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>"$KF.watch" &
        w=$!
        track_pid "$w"
        wait_attached 2
        stop_device $sig
        num=$(kill -l $sig)
        tail -n 1 "$KF.out" | grep -q "^device: signal $num: removed shmid " ||
            fail "after SIG$sig the device said: $(tail -n 1 "$KF.out")"
        nothing_left
        exit_within "$w" 5 || fail "the watcher still runs 5 s after SIG$sig to the device"
        [ "$RC" = 1 ] || fail "the watcher exited $RC after the device stopped, expected 1"
        [[ "$(cat "$KF.watch")" == "device_client: watch: the device (pid $DEV_PID) stopped"* ]] ||
            fail "the watcher said: $(cat "$KF.watch")"
    done
}

watch_ctrl_c() {
    start_device ctrlc --period 10000
    "$BIN/device_client" -k "$KF" watch 0 >/dev/null 2>wc.err &
    local w=$!
    track_pid "$w"
    wait_attached 2
    kill -INT "$w"
    exit_within "$w" 5 || fail "watch still runs 5 s after SIGINT"
    [ "$RC" = 130 ] || fail "watch exited $RC after SIGINT, expected 130"
    [ ! -s wc.err ] || fail "watch said on SIGINT: $(cat wc.err)"
    expect ok set 0 1
    stop_device
    nothing_left
}

no_torn_channel() {
    start_device torn --ramp 0 --period 1 --channels 2
    client watch 0 --count 150 >t.out 2>&1 &
    local w=$! i
    track_pid "$w"
    for ((i = 1; i <= 150; i++)); do client set 0 "$i.5" >/dev/null || fail "set $i failed"; done
    exit_within "$w" 20 || fail "watch --count 150 did not finish"
    awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); f[a[1]] = a[2] }
        if (f["setpoint"] != f["readback"] || f["status"] != "ok") bad = $0 }
        END { if (bad) { print "torn: " bad; exit 1 } }' t.out || fail "$(tail -n 1 t.out)"
    stop_device
}

usage() {
    local args rc
    KF=$(new_key_file us)
    for args in "" "fly" "set 1" "get" "get 0 --count 2" "--bogus get 0"; do
        # shellcheck disable=SC2086
        timeout 10 "$BIN/device_client" -k "$KF" $args >u.out 2>u.err
        rc=$?
        [ "$rc" = 2 ] || fail "device_client $args exited $rc, expected 2"
        grep -q "^device_client: " u.err || fail "device_client $args said: $(cat u.err)"
    done
    for args in "--bogus" "--ramp -1" "--ramp nan" "--period 0" "--period 10001" "--channels x"; do
        # shellcheck disable=SC2086
        timeout 10 "$BIN/device" -k "$KF" $args >/dev/null 2>u.err
        rc=$?
        [ "$rc" = 2 ] || fail "device $args exited $rc, expected 2"
        grep -q "^device: " u.err || fail "device $args said: $(cat u.err)"
    done
    [ -z "$(objects_with_key "$(ftok_key "$KF" "$PROJ")")" ] || fail "a refused device left objects"
    timeout 10 "$BIN/detach" -k "$KF" --bogus >/dev/null 2>&1
    rc=$?
    [ "$rc" = 2 ] || fail "detach --bogus exited $rc, expected 2"
}

check start-line 1 start_line
check set-get 2 set_get
check channel-boundaries 3 channel_boundaries
check value-limits 2 value_limits
check watch 2 watch_updates
check ramp 2 ramp
check prompt-commands 1 prompt_commands
check no-device 1 no_device
check second-device-refused 1 second_device
check killed-client-mid-command 3 killed_client
check device-death 2 device_death
check detach-stat-values 3 detach_stat
check detach-removal 2 detach_removal
check objects-removed-under-it 2 objects_removed_under_it
check signal-cleanup 3 signal_cleanup
check watch-ctrl-c 1 watch_ctrl_c
check no-torn-channel 1 no_torn_channel
check usage 1 usage
check no-leaks 1 check_no_leaks
grade_finish
