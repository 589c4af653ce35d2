#!/usr/bin/env bash
# enqueue-loop.sh -- one site's production loop, for a screen/tmux session or enqueue@.service.
#
# usage: enqueue-loop.sh [options] CONFIG SITE [--] SUBMIT_CMD [ARGS...]
#
# By default the loop runs one persistent agent for the site:
#
#   enqueue run CONFIG SITE --repeat --between MONITOR --between-every PAUSE -- SUBMIT_CMD...
#
# which runs the monitoring step (--monitor) before each wait for a turn and
# again every --pause while the site waits (also while production is paused
# or the site drained), takes a turn whenever the rotation comes to the site,
# and logs each step's exit code in its own log (-o --log-file=...). The
# site shows 'between' in 'enqueue status' while it monitors, and keeps its
# heartbeat and its place throughout. The loop only restarts the agent when
# it ends: 3 (database unreachable) after a back-off as below; 2, 4, 5, 6, 7
# stop the loop with that code; anything else after --retry-delay.
#
#   2026-11-22T03:04:05Z enqueue-loop alpha: enqueue run exit 3 (database unreachable): next try in 60 s
#
# With --run-once the loop is the original one, every iteration:
#   1. the monitoring step (--monitor): a shell command every site runs at
#      every iteration, at the same time as the others -- it is NOT enqueued;
#      it gets the loop's environment minus every ENQUEUE_COUCHDB_* variable;
#   2. the submission step: 'enqueue run CONFIG SITE --no-repeat -- SUBMIT_CMD...'
#      waits for this site's turn, runs SUBMIT_CMD once, and ends the turn;
#   3. a pause (--pause) before the next iteration.
# Each step's exit code is logged on one line with a UTC timestamp, to
# stdout and, with --log, appended to a file:
#
#   2026-11-22T03:04:05Z enqueue-loop alpha: iteration 3: monitor exit 0
#   2026-11-22T03:04:17Z enqueue-loop alpha: iteration 3: submission exit 0 (12 s)
#
# When 'enqueue run' fails before the submission started, the loop tells its
# exit code from the submission's own (the submission is started through a
# one-line shell wrapper that marks the start, then execs it):
#   75 (no turn within --max-wait): logged, and the next iteration starts at
#     once (no pause: the agent waited already), so the monitoring goes on
#     while production is paused, drained or busy with other sites;
#   3 (database unreachable): logged, and the next iteration waits
#     --retry-delay, doubled after every further 3 up to --retry-max (never
#     less than --pause); back to --retry-delay after an iteration that got
#     past the database;
#   2, 4, 5, 6, 7 (configuration, credentials, missing database, clustered
#     database, another agent of this site on this host): retrying cannot fix
#     them, so the loop logs one line saying why and exits with that code
#     (under systemd the unit then fails and stays down, see enqueue@.service):
#
#   2026-11-22T03:04:05Z enqueue-loop alpha: iteration 3: enqueue run exit 3 before the submission started (database unreachable): next try in 60 s
#   2026-11-22T03:04:05Z enqueue-loop alpha: iteration 4: enqueue run exit 4 before the submission started (credentials refused or not allowed): retrying cannot fix that, stopping with exit code 4
#
# A submission that itself exits 2..7 is logged like any other exit code and
# the loop goes on.
#
# Ctrl-C or SIGTERM stops the loop cleanly: the step in progress gets
# SIGTERM (a submission ends its turn the way 'enqueue run' does: the command
# is stopped with the kill grace, the turn is recorded, the site says it
# left), the loop waits for it, logs, and exits 0.
#
# Options (the environment variable in brackets sets the default, so a
# systemd EnvironmentFile can configure the loop):
#   -m, --monitor CMD      [ENQUEUE_LOOP_MONITOR]  monitoring command, run with bash -c (default: none)
#   -p, --pause DURATION   [ENQUEUE_LOOP_PAUSE]    how often the monitoring step runs again while the site
#                          waits; with --run-once: the pause between iterations (default: 60s)
#       --run-once         [ENQUEUE_LOOP_RUN_ONCE=yes]  the original loop: 'enqueue run --no-repeat' per iteration
#   -l, --log FILE         [ENQUEUE_LOOP_LOG]      also append the loop's lines to FILE
#   -e, --enqueue PROGRAM  [ENQUEUE_LOOP_ENQUEUE]  the enqueue program, split on spaces (default: enqueue)
#   -o, --run-option OPT   an option for 'enqueue run' (repeatable), e.g. -o --log-file=/var/log/enqueue/alpha.log
#   -n, --iterations N     (--run-once) stop after N iterations (default: until stopped)
#   -w, --max-wait DURATION [ENQUEUE_LOOP_MAX_WAIT] (--run-once) give up waiting for a turn after DURATION
#                          ('enqueue run --max-wait', exit 75) and go on with the next
#                          iteration's monitoring (default: wait for the turn however long)
#       --retry-delay DURATION [ENQUEUE_LOOP_RETRY_DELAY]  first wait after 'database unreachable' (default: 30s)
#       --retry-max DURATION   [ENQUEUE_LOOP_RETRY_MAX]    longest such wait (default: 30m)
#   A DURATION is a number with a unit, 30s, 2m, 1h (0.5m too); a bare number
#   is seconds here, as it always was for this script.
#   -h, --help             show this text
#
# Exit codes: 0 stopped by a signal or after --iterations; 2 usage error of
# this script; 2, 4, 5, 6, 7 the exit code of 'enqueue run' when it failed
# before the submission started in a way retrying cannot fix.

set -u

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

die_usage() {
    echo "enqueue-loop.sh: $1 (see --help)" >&2
    exit 2
}

monitor=${ENQUEUE_LOOP_MONITOR:-}
pause=${ENQUEUE_LOOP_PAUSE:-60}
log_file=${ENQUEUE_LOOP_LOG:-}
enqueue_program=${ENQUEUE_LOOP_ENQUEUE:-enqueue}
iterations=0
run_once=${ENQUEUE_LOOP_RUN_ONCE:-}
[ "$run_once" = no ] && run_once=""
max_wait=${ENQUEUE_LOOP_MAX_WAIT:-}
retry_delay=${ENQUEUE_LOOP_RETRY_DELAY:-30}
retry_max=${ENQUEUE_LOOP_RETRY_MAX:-1800}
run_options=()

while [ $# -gt 0 ]; do
    case $1 in
        -m|--monitor) [ $# -ge 2 ] || die_usage "$1 needs a value"; monitor=$2; shift 2 ;;
        --monitor=*) monitor=${1#*=}; shift ;;
        -p|--pause) [ $# -ge 2 ] || die_usage "$1 needs a value"; pause=$2; shift 2 ;;
        --pause=*) pause=${1#*=}; shift ;;
        -l|--log) [ $# -ge 2 ] || die_usage "$1 needs a value"; log_file=$2; shift 2 ;;
        --log=*) log_file=${1#*=}; shift ;;
        -e|--enqueue) [ $# -ge 2 ] || die_usage "$1 needs a value"; enqueue_program=$2; shift 2 ;;
        --enqueue=*) enqueue_program=${1#*=}; shift ;;
        -o|--run-option) [ $# -ge 2 ] || die_usage "$1 needs a value"; run_options+=("$2"); shift 2 ;;
        --run-option=*) run_options+=("${1#*=}"); shift ;;
        -n|--iterations) [ $# -ge 2 ] || die_usage "$1 needs a value"; iterations=$2; shift 2 ;;
        --iterations=*) iterations=${1#*=}; shift ;;
        --run-once) run_once=yes; shift ;;
        -w|--max-wait) [ $# -ge 2 ] || die_usage "$1 needs a value"; max_wait=$2; shift 2 ;;
        --max-wait=*) max_wait=${1#*=}; shift ;;
        --retry-delay) [ $# -ge 2 ] || die_usage "$1 needs a value"; retry_delay=$2; shift 2 ;;
        --retry-delay=*) retry_delay=${1#*=}; shift ;;
        --retry-max) [ $# -ge 2 ] || die_usage "$1 needs a value"; retry_max=$2; shift 2 ;;
        --retry-max=*) retry_max=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) die_usage "unknown option $1" ;;
        *) break ;;
    esac
done

[ $# -ge 3 ] || die_usage "CONFIG, SITE and SUBMIT_CMD are required"
config=$1
site=$2
shift 2
[ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || die_usage "SUBMIT_CMD is required after CONFIG SITE"
# seconds OPTION VALUE: VALUE (30s, 2m, 1h, or a bare number of seconds) in seconds, or a usage error.
seconds() {
    [[ $2 =~ ^([0-9]+(\.[0-9]+)?)([smh]?)$ ]] ||
        die_usage "$1 must be a duration such as 30s, 2m or 1h, not '$2'"
    awk -v n="${BASH_REMATCH[1]}" -v unit="${BASH_REMATCH[3]}" 'BEGIN {
        f = (unit == "m") ? 60 : (unit == "h") ? 3600 : 1; printf "%g", n * f }'
}
pause=$(seconds --pause "$pause") || exit 2
[[ $iterations =~ ^[0-9]+$ ]] || die_usage "--iterations must be a whole number, not '$iterations'"
[ -z "$run_once" ] && [ "$iterations" -gt 0 ] && die_usage "--iterations counts the iterations of --run-once"
retry_delay=$(seconds --retry-delay "$retry_delay") || exit 2
[ -z "$run_once" ] && [ -n "$max_wait" ] &&
    die_usage "--max-wait is for --run-once: a persistent agent waits for its turn while it monitors"
if [ -n "$max_wait" ]; then
    max_wait=$(seconds --max-wait "$max_wait") || exit 2
    run_options+=("--max-wait=${max_wait}s")
fi
retry_max=$(seconds --retry-max "$retry_max") || exit 2
read -r -a enqueue_cmd <<< "$enqueue_program"
[ ${#enqueue_cmd[@]} -ge 1 ] || die_usage "--enqueue is empty"

log() {
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) enqueue-loop $site: $*"
    echo "$line"
    if [ -n "$log_file" ]; then
        echo "$line" >> "$log_file"
    fi
}

# --- signals: remember the stop, pass SIGTERM on to the step in progress.
stop_signal=""
child=""
on_signal() {
    stop_signal=$1
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
    fi
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

# run_step CMD...: run CMD in the background and wait for it, so that a signal
# is handled at once rather than when CMD ends; the exit code is left in $rc.
run_step() {
    "$@" &
    child=$!
    wait "$child"
    rc=$?
    # A trapped signal ends 'wait' early: wait on until the step has really ended.
    while kill -0 "$child" 2>/dev/null; do
        wait "$child"
        rc=$?
    done
    # If the step ended during an interrupted wait, its status is still kept for us.
    local again
    wait "$child" 2>/dev/null
    again=$?
    [ "$again" -ne 127 ] && rc=$again
    child=""
}

# The exit codes of 'enqueue run' itself that retrying cannot fix (docs/OPERATIONS.md).
unfixable_reason() {
    case $1 in
        2) echo "usage or configuration error" ;;
        4) echo "credentials refused or not allowed" ;;
        5) echo "the database does not exist" ;;
        6) echo "the database keeps several copies (n > 1)" ;;
        7) echo "an agent of this site already runs on this host" ;;
        *) return 1 ;;
    esac
}

# backoff N: seconds to wait after the Nth 'database unreachable' in a row.
backoff() {
    awk -v first="$retry_delay" -v most="$retry_max" -v pause="$pause" -v n="$1" 'BEGIN {
        d = first * 2 ^ (n - 1); if (d > most) d = most; if (d < pause) d = pause; printf "%g", d }'
}

# retry_or_stop WHERE WHEN OTHERWISE: what follows an exit of 'enqueue run' itself (no command of
# ours ran): stop with its exit code when retrying cannot fix it; back off while the database is
# unreachable (unreachable counts those in a row, wait_s gets the delay); otherwise go on. Each log
# line reads "WHERE enqueue run exit N WHEN (why)...", OTHERWISE ends the last one.
retry_or_stop() {
    local where=$1 when=$2 otherwise=$3 reason
    if reason=$(unfixable_reason "$rc"); then
        log "${where}enqueue run exit $rc$when ($reason): retrying cannot fix that, stopping with exit code $rc"
        exit "$rc"
    elif [ "$rc" -eq 3 ]; then
        unreachable=$((unreachable + 1))
        wait_s=$(backoff "$unreachable")
        log "${where}enqueue run exit 3$when (database unreachable): next try in $wait_s s"
    else
        log "${where}enqueue run exit $rc$when$otherwise"
        unreachable=0
    fi
}

# --- the persistent agent (the default): one 'enqueue run --repeat --between' until stopped.
persistent() {
    local side=() unreachable=0 wait_s
    if [ -n "$monitor" ]; then
        # The agent runs it with sh -c; the variable keeps the command line's bash quoting intact.
        export ENQUEUE_LOOP_MONITOR_CMD=$monitor
        # shellcheck disable=SC2016  # expanded by the side command's shell, not here
        side=(--between 'exec bash -c "$ENQUEUE_LOOP_MONITOR_CMD"' --between-every "${pause}s")
    fi
    log "started: config $config, persistent agent, monitoring every ${pause} s while waiting, submission: $*"
    while [ -z "$stop_signal" ]; do
        run_step "${enqueue_cmd[@]}" run "$config" "$site" --repeat ${side[@]+"${side[@]}"} \
            ${run_options[@]+"${run_options[@]}"} -- "$@"
        [ -n "$stop_signal" ] && break
        wait_s=$retry_delay
        retry_or_stop "" "" ": starting it again in $wait_s s"
        run_step sleep "$wait_s"
    done
    log "stopped by $stop_signal"
    exit 0
}
[ -z "$run_once" ] && persistent "$@"

# The submission runs as 'bash -c WRAPPER MARKER SUBMIT_CMD...': it creates
# MARKER, then execs SUBMIT_CMD (same process, same process group, same exit
# code). No MARKER after 'enqueue run' has ended: the exit code is enqueue's own.
marker_dir=$(mktemp -d "${TMPDIR:-/tmp}/enqueue-loop.XXXXXX") || { echo "enqueue-loop.sh: cannot create a temporary directory" >&2; exit 1; }
trap 'rm -rf "$marker_dir"' EXIT
marker="$marker_dir/started"
# shellcheck disable=SC2016  # expanded by the wrapper's shell, not here
wrapper=': > "$0" || exit 1; exec "$@"'

log "started: config $config, pause ${pause} s, submission: $*"
iteration=0
unreachable=0
while [ -z "$stop_signal" ]; do
    iteration=$((iteration + 1))

    # 1. Monitoring: every site, every iteration, not enqueued. Like the
    #    submission's command, it runs without enqueue's connection settings
    #    (ENQUEUE_COUCHDB_*: a password, a URL with credentials in it).
    if [ -n "$monitor" ]; then
        without_connection=(env)
        for name in ${!ENQUEUE_COUCHDB_@}; do
            without_connection+=(-u "$name")
        done
        run_step "${without_connection[@]}" bash -c "$monitor"
        log "iteration $iteration: monitor exit $rc"
        [ -n "$stop_signal" ] && break
    fi

    # 2. Submission: one turn, in the rotation with the other sites.
    started=$SECONDS
    rm -f "$marker"
    run_step "${enqueue_cmd[@]}" run "$config" "$site" --no-repeat ${run_options[@]+"${run_options[@]}"} \
        -- bash -c "$wrapper" "$marker" "$@"
    wait_s=$pause
    if [ -e "$marker" ]; then
        log "iteration $iteration: submission exit $rc ($((SECONDS - started)) s)"
        unreachable=0
    elif [ -n "$stop_signal" ]; then
        log "iteration $iteration: enqueue run exit $rc before the submission started"
    elif [ "$rc" -eq 75 ]; then
        log "iteration $iteration: no turn within --max-wait (enqueue run exit 75): going on with the next iteration"
        unreachable=0
        wait_s=0
    else
        retry_or_stop "iteration $iteration: " " before the submission started" ""
    fi
    [ -n "$stop_signal" ] && break

    if [ "$iterations" -gt 0 ] && [ "$iteration" -ge "$iterations" ]; then
        log "done after $iteration iterations"
        exit 0
    fi

    # 3. The pause (longer after 'database unreachable'); a signal ends it at once.
    run_step sleep "$wait_s"
done
log "stopped by $stop_signal after $iteration iterations"
exit 0
