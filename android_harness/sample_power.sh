#!/system/bin/sh
# Samples the battery fuel gauge until a stop file appears or its parent is gone.
#
# usage: sample_power.sh OUT BATTERY_DIR CURRENT_FILE INTERVAL_S [STOP_FILE] [PARENT_PID]
#   OUT          file to append to (created if missing)
#   BATTERY_DIR  e.g. /sys/class/power_supply/battery
#   CURRENT_FILE current_now, or current_avg where a phone has no current_now
#   INTERVAL_S   seconds between samples (fractions allowed, e.g. 0.01)
#   STOP_FILE    sampling ends once this exists (default: OUT.stop)
#   PARENT_PID   sampling also ends once this process is gone (a watchdog: a shell killed
#                by a cable pull never leaves a sampler behind)
#
# Lines appended (times are /proc/uptime seconds, raw file values, no unit conversion):
#   battery DIR CURRENT_FILE voltage_now   the files read
#   start UPTIME STATUS TEMP               status/temp when sampling starts
#   UPTIME CURRENT VOLTAGE                 one per sample
#   end UPTIME STATUS TEMP                 status/temp when sampling ends
#   error REASON DETAIL                    the battery cannot be read (then exit 3)
# Every path is an argument: the loopback test device rewrites paths on command lines only.
# POSIX sh for toybox/mksh: builtins only inside the loop (read, kill -0, not cat) so a sample
# costs no fork besides sleep; `date +%s` is too coarse, so time comes from /proc/uptime.

out=$1
bat=$2
cur_file=$3
interval=$4
stop=${5:-$1.stop}
parent=${6:-}

if [ -z "$out" ] || [ -z "$bat" ] || [ -z "$cur_file" ] || [ -z "$interval" ]; then
    echo "usage: sample_power.sh OUT BATTERY_DIR CURRENT_FILE INTERVAL_S [STOP_FILE] [PARENT_PID]" >&2
    exit 2
fi

now() {
    read -r up _rest < /proc/uptime
}

field() {
    # field FILE: the first line of FILE in $val, or "?" when unreadable
    val='?'
    if [ -r "$1" ]; then
        read -r val < "$1" || val='?'
    fi
}

if [ ! -r "$bat/$cur_file" ] || [ ! -r "$bat/voltage_now" ]; then
    now
    echo "error no-battery $bat" >> "$out"
    exit 3
fi

echo "battery $bat $cur_file voltage_now" >> "$out"
now
field "$bat/status"; st=$val
field "$bat/temp"; tp=$val
echo "start $up $st $tp" >> "$out"

while [ ! -e "$stop" ]; do
    if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then
        break
    fi
    cur=; vol=
    read -r cur < "$bat/$cur_file"
    read -r vol < "$bat/voltage_now"
    now
    # A read that caught the file mid-update is dropped rather than logged half-empty.
    if [ -n "$cur" ] && [ -n "$vol" ]; then
        echo "$up $cur $vol" >> "$out"
    fi
    sleep "$interval"
done

now
field "$bat/status"; st=$val
field "$bat/temp"; tp=$val
echo "end $up $st $tp" >> "$out"
exit 0
