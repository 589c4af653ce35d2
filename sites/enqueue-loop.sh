#!/usr/bin/env bash
# enqueue-loop.sh -- one site's production loop, for a screen/tmux session or enqueue@.service.
#
# usage: enqueue-loop.sh [options] CONFIG SITE [--] SUBMIT_CMD [ARGS...]
#
# Every iteration:
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
# Ctrl-C or SIGTERM stops the loop cleanly: the step in progress gets
# SIGTERM (a submission ends its turn the way 'enqueue run' does: the command
# is stopped with the kill grace, the turn is recorded, the site says it
# left), the loop waits for it, logs, and exits 0.
#
# Options (the environment variable in brackets sets the default, so a
# systemd EnvironmentFile can configure the loop):
#   -m, --monitor CMD      [ENQUEUE_LOOP_MONITOR]  monitoring command, run with bash -c (default: none)
#   -p, --pause SECONDS    [ENQUEUE_LOOP_PAUSE]    pause between iterations (default: 60)
#   -l, --log FILE         [ENQUEUE_LOOP_LOG]      also append the loop's lines to FILE
#   -e, --enqueue PROGRAM  [ENQUEUE_LOOP_ENQUEUE]  the enqueue program, split on spaces (default: enqueue)
#   -o, --run-option OPT   an option for 'enqueue run' (repeatable), e.g. -o --log-file=/var/log/enqueue/alpha.log
#   -n, --iterations N     stop after N iterations (default: until stopped)
#   -h, --help             show this text
#
# Exit codes: 0 stopped by a signal or after --iterations; 2 usage error.

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
[[ $pause =~ ^[0-9]+(\.[0-9]+)?$ ]] || die_usage "--pause must be a number of seconds, not '$pause'"
[[ $iterations =~ ^[0-9]+$ ]] || die_usage "--iterations must be a whole number, not '$iterations'"
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

log "started: config $config, pause ${pause} s, submission: $*"
iteration=0
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
    run_step "${enqueue_cmd[@]}" run "$config" "$site" --no-repeat ${run_options[@]+"${run_options[@]}"} -- "$@"
    log "iteration $iteration: submission exit $rc ($((SECONDS - started)) s)"
    [ -n "$stop_signal" ] && break

    if [ "$iterations" -gt 0 ] && [ "$iteration" -ge "$iterations" ]; then
        log "done after $iteration iterations"
        exit 0
    fi

    # 3. The pause; a signal ends it at once.
    run_step sleep "$pause"
done
log "stopped by $stop_signal after $iteration iterations"
exit 0
