#!/system/bin/sh
# Samples the battery fuel gauge until a stop file appears.
#
# usage: sample_power.sh OUT BATTERY_DIR INTERVAL_S [STOP_FILE]
#   OUT          file to append to (created if missing)
#   BATTERY_DIR  e.g. /sys/class/power_supply/battery
#   INTERVAL_S   seconds between samples (fractions allowed, e.g. 0.01)
#   STOP_FILE    sampling ends once this exists (default: OUT.stop)
#
# Lines appended (times are /proc/uptime seconds, raw file values, no unit conversion):
#   start UPTIME STATUS TEMP       status/temp when sampling starts
#   UPTIME CURRENT VOLTAGE         one per sample
#   end UPTIME STATUS TEMP         status/temp when sampling ends
#   error REASON DETAIL            the battery cannot be read (then exit 3)
# Every path is an argument: the loopback test device rewrites paths on command lines only.
# POSIX sh for toybox/mksh: builtins only inside the loop (read, not cat) so a sample costs
# no fork besides sleep; `date +%s` is too coarse, so time comes from /proc/uptime.

out=$1
bat=$2
interval=$3
stop=${4:-$1.stop}

if [ -z "$out" ] || [ -z "$bat" ] || [ -z "$interval" ]; then
    echo "usage: sample_power.sh OUT BATTERY_DIR INTERVAL_S [STOP_FILE]" >&2
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

if [ ! -r "$bat/current_now" ] || [ ! -r "$bat/voltage_now" ]; then
    now
    echo "error no-battery $bat" >> "$out"
    exit 3
fi

now
field "$bat/status"; st=$val
field "$bat/temp"; tp=$val
echo "start $up $st $tp" >> "$out"

while [ ! -e "$stop" ]; do
    cur=; vol=
    read -r cur < "$bat/current_now"
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
