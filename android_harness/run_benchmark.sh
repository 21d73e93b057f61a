#!/system/bin/sh
# Runs one benchmark, optionally inside a power-sampling session with window markers.
#
# usage: run_benchmark.sh SAMPLES BATTERY_DIR CURRENT_FILE INTERVAL_S BASELINE_S TAIL_S BINARY [ARGS...]
#   SAMPLES      power sample file to write, or "-" to run BINARY without sampling
#   BATTERY_DIR  e.g. /sys/class/power_supply/battery (ignored when SAMPLES is "-")
#   CURRENT_FILE current_now or current_avg (ignored when SAMPLES is "-")
#   INTERVAL_S   sampling interval in seconds (ignored when SAMPLES is "-")
#   BASELINE_S   idle seconds measured right before the benchmark (ignored when "-")
#   TAIL_S       seconds sampled after the benchmark: a fuel gauge publishes the load late
#   BINARY ARGS  the benchmark command; its output passes through, its exit code is ours
#
# Marker lines added to SAMPLES (uptime seconds): "mark UPTIME baseline_start",
# "baseline_end", "measured_start", "measured_end", "tail_end". sample_power.sh must sit next
# to this script. Samplers left by an earlier run (pid files in samplers/ beside SAMPLES's
# directory, shared by all runs) are stopped first; a hang-up (adbd SIGHUPs only the shell on a cable pull) or
# SIGINT/SIGTERM stops the benchmark and the sampler, and the sampler also stops by itself
# once this shell is gone.
#
# Power rails (ODPM): with MOBILE_OPT_RAILS set in the environment — "dumpsys", or ODPM IIO
# directories separated by spaces — every source is snapshotted at baseline_start, baseline_end
# and tail_end into SAMPLES.rails: "rails MARK UPTIME SOURCE", then "sampling_rate HZ" and the
# directory's energy_value (or the PowerStats HAL dump), or "error WHY" (device_bench/rails.py).

# A failing `shift` is fatal in some shells (mksh), so count first.
if [ $# -lt 7 ]; then
    echo "usage: run_benchmark.sh SAMPLES BATTERY_DIR CURRENT_FILE INTERVAL_S BASELINE_S TAIL_S BINARY [ARGS...]" >&2
    exit 2
fi
samples=$1
bat=$2
cur_file=$3
interval=$4
baseline=$5
tail_s=$6
shift 6

if [ "$samples" = "-" ]; then
    exec "$@"
fi

mark() {
    read -r up _rest < /proc/uptime
    echo "mark $up $1" >> "$samples"
}

rails_snapshot() {
    [ -n "$MOBILE_OPT_RAILS" ] || return 0
    if [ "$MOBILE_OPT_RAILS" = dumpsys ]; then
        read -r up _rest < /proc/uptime
        echo "rails $1 $up dumpsys" >> "$rails"
        dumpsys android.hardware.power.stats.IPowerStats/default >> "$rails" 2>/dev/null \
            || echo "error dumpsys failed" >> "$rails"
        return 0
    fi
    for dir in $MOBILE_OPT_RAILS; do
        read -r up _rest < /proc/uptime
        echo "rails $1 $up $dir" >> "$rails"
        # cat, not [ -r ]: root passes -r on a file that the driver still refuses to read.
        if rate=$(cat "$dir/sampling_rate" 2>/dev/null) && value=$(cat "$dir/energy_value" 2>/dev/null); then
            echo "sampling_rate $rate" >> "$rails"
            echo "$value" >> "$rails"
        else
            echo "error $dir/energy_value or sampling_rate not readable" >> "$rails"
        fi
    done
}

here=${0%/*}
pids="${samples%/*}/../samplers"
mkdir -p "$pids"
for pidfile in "$pids"/*.pid; do
    [ -e "$pidfile" ] || continue
    read -r old < "$pidfile"
    # Only a sampler of ours: a recycled pid may belong to anything else by now.
    if [ -n "$old" ] && grep -q sample_power "/proc/$old/cmdline" 2>/dev/null; then
        kill "$old" 2>/dev/null
    fi
    rm -f "$pidfile"
done

stop="$samples.stop"
rails="$samples.rails"
rm -f "$samples" "$stop" "$rails"
sh "$here/sample_power.sh" "$samples" "$bat" "$cur_file" "$interval" "$stop" "$$" < /dev/null &
sampler=$!
echo "$sampler" > "$pids/$sampler.pid"
bench=

cleanup() {
    [ -n "$bench" ] && kill "$bench" 2>/dev/null
    : > "$stop"
    kill "$sampler" 2>/dev/null
    rm -f "$pids/$sampler.pid" "$stop"
}
trap 'mark aborted; cleanup; exit 129' HUP INT TERM

rails_snapshot baseline_start
mark baseline_start
sleep "$baseline"
mark baseline_end
rails_snapshot baseline_end
mark measured_start
# In the background so that a signal is handled at once, not after the benchmark ends.
"$@" &
bench=$!
wait "$bench"
rc=$?
bench=
mark measured_end
sleep "$tail_s"
mark tail_end
rails_snapshot tail_end

: > "$stop"
wait "$sampler"
rm -f "$stop" "$pids/$sampler.pid"
exit $rc
