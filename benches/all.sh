#!/usr/bin/env bash
# Every figure of issue 13's table in one command (BENCHMARKS.md, "Issue 13: every figure").
#
#   benches/all.sh                 # the issue's sizes: about an hour on 2 cores
#   ALL_QUICK=1 benches/all.sh     # smaller sizes, a few minutes each: for a check, not for the table
#   ALL_ONLY="api first" benches/all.sh   # some of them
#
# Each bench makes its own fresh database on the PostgreSQL at 127.0.0.1:5432 (as for the tests) and
# starts its own simulator; run it on a quiet machine: time figures (jobs/s, lag, req/s) move with the
# load, and every report prints the load average. Reports are printed and kept in target/bench-all/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${ALL_QUICK:-0}
only=${ALL_ONLY:-"burst demo-image demo-volume keystone memory first api"}
out=target/bench-all
mkdir -p "$out"
size() { if [ "$quick" = 1 ]; then echo "$2"; else echo "$1"; fi; }

run() {
  local name=$1
  shift
  case " $only " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name: $* (load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD))"
  "$@" 2>&1 | tee "$out/$name.txt"
}

# Measured as a deployment runs: with autovacuum. A CI machine's PostgreSQL may have it off (here
# conf.d/90-ci.conf): a long burst then leaves every job update's old version in place (240,000
# dead versions of 50,000 jobs at 10,000 policies), every claim scans them, and the burst slowed to
# ~16 jobs/s. Turned on for the run (ALTER SYSTEM, reloaded) and reset after.
pg() { psql -h 127.0.0.1 -U postgres -Atq "$@" postgres; }
if [ "$(pg -c 'show autovacuum')" != on ]; then
  pg -c "alter system set autovacuum = on" -c "select pg_reload_conf()"
  trap 'pg -c "alter system reset autovacuum" -c "select pg_reload_conf()"' EXIT
fi
echo "autovacuum: $(pg -c 'show autovacuum')"
cargo build --release --quiet --bin stacksnap
# 10,000 policies over 50,000 image-backed servers due at one instant, the simulator (`sim --fast`)
# in its own process: runs fired/s, lag, jobs/s, calls and transactions per job, RSS.
run burst env BENCH_DB=bench_burst BENCH_SIM=process BENCH_POLICIES="$(size 10000 2000)" \
  cargo bench --quiet --bench engine
# Calls per job with seconds-long transitions (`stacksnap demo`): image-backed, and volume-backed
# with 2 volumes.
run demo-image env BENCH_DB=bench_demo BENCH_SIM=process BENCH_TRANSITIONS=demo \
  BENCH_POLICIES="$(size 400 100)" cargo bench --quiet --bench engine
run demo-volume env BENCH_DB=bench_demo BENCH_SIM=process BENCH_TRANSITIONS=demo BENCH_BACKING=volume \
  BENCH_POLICIES="$(size 400 100)" cargo bench --quiet --bench engine
# The burst in keystone mode: a trust per policy, Keystone requests per trust.
run keystone env BENCH_DB=bench_keystone BENCH_POLICIES="$(size 2000 200)" \
  cargo bench --quiet --bench engine -- keystone
# 100,000 jobs in flight against a slow simulator: the service's RSS, tracking calls per second.
# Polls back off to 5 minutes here (the uploads last an hour): at the engine's 30 s, 100,000 jobs
# are ~3,300 job updates a second on 2 cores and the starts never reach 100,000.
run memory env BENCH_DB=bench_memory BENCH_JOBS="$(size 100000 10000)" BENCH_MAX_POLL_S=300 \
  cargo bench --quiet --bench engine -- memory
# Run-now of a 50-server policy until every createImage is sent, against the openstack CLI loop.
run first env FIRST_BUILD=0 FIRST_ROUNDS="$(size 3 1)" benches/first_request.sh
# GET /v1/policies/{id} and the lists under 64 connections.
run api env API_POLICIES="$(size 1000 200)" API_SECONDS="$(size 15 5)" benches/api.sh
echo "reports: $out/"
