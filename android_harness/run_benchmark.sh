#!/system/bin/sh
# Runs one benchmark, optionally inside a power-sampling session with window markers.
#
# usage: run_benchmark.sh SAMPLES BATTERY_DIR INTERVAL_S BASELINE_S BINARY [ARGS...]
#   SAMPLES      power sample file to write, or "-" to run BINARY without sampling
#   BATTERY_DIR  e.g. /sys/class/power_supply/battery (ignored when SAMPLES is "-")
#   INTERVAL_S   sampling interval in seconds (ignored when SAMPLES is "-")
#   BASELINE_S   idle seconds measured right before the benchmark (ignored when "-")
#   BINARY ARGS  the benchmark command; its output passes through, its exit code is ours
#
# Marker lines added to SAMPLES (uptime seconds): "mark UPTIME baseline_start",
# "baseline_end", "measured_start", "measured_end". sample_power.sh must sit next to this
# script. The sampler runs in our process group, so stopping this command stops it too.

# A failing `shift` is fatal in some shells (mksh), so count first.
if [ $# -lt 5 ]; then
    echo "usage: run_benchmark.sh SAMPLES BATTERY_DIR INTERVAL_S BASELINE_S BINARY [ARGS...]" >&2
    exit 2
fi
samples=$1
bat=$2
interval=$3
baseline=$4
shift 4

if [ "$samples" = "-" ]; then
    exec "$@"
fi

mark() {
    read -r up _rest < /proc/uptime
    echo "mark $up $1" >> "$samples"
}

here=${0%/*}
stop="$samples.stop"
rm -f "$samples" "$stop"
sh "$here/sample_power.sh" "$samples" "$bat" "$interval" "$stop" < /dev/null &
sampler=$!

mark baseline_start
sleep "$baseline"
mark baseline_end
mark measured_start
"$@"
rc=$?
mark measured_end

: > "$stop"
wait "$sampler"
rm -f "$stop"
exit $rc
