#!/usr/bin/env bash
# API load: GET /v1/policies/{id} and the list endpoints under 64 connections (issue 13, item 6).
#
#   benches/api.sh                      # 1,000 policies, 15 s per endpoint
#   API_POLICIES=10000 API_SECONDS=30 benches/api.sh
#
# Builds the release binary, serves the API alone (`--no-engine --auth none`) on a fresh database
# `$BENCH_DB` (default `stacksnap_apibench`; PostgreSQL on 127.0.0.1:5432, as for the tests), creates the policies through
# the API, then runs wrk (Debian's package, installed when missing) against each endpoint and prints
# requests/s and latency percentiles. The service's peak RSS is read from /proc at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

policies=${API_POLICIES:-1000}
seconds=${API_SECONDS:-15}
connections=${API_CONNECTIONS:-64}
port=${API_PORT:-18080}
db=${BENCH_DB:-stacksnap_apibench}
base="http://127.0.0.1:$port"

command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk >/dev/null
cargo build --release --quiet --bin stacksnap

psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db" -c "create database $db" postgres
log=$(mktemp)
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" STACKSNAP_LOG_FORMAT=json RUST_LOG=warn \
  target/release/stacksnap serve --no-engine --auth none --listen "127.0.0.1:$port" \
  --api-db-max-connections "${API_DB_CONNECTIONS:-5}" >"$log" 2>&1 &
service=$!
trap 'kill $service 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.2; done

echo "creating $policies policies" >&2
python3 - "$base" "$policies" <<'EOF'
import json, sys, urllib.request, uuid
base, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    body = {
        "name": f"bench-{i}",
        "resource_type": "server",
        "targets": {"ids": [str(uuid.uuid4()) for _ in range(5)]},
        "schedules": [{"cron": f"{i % 60} 2 * * *", "timezone": "Europe/Berlin"}],
        "retention": {"keep_last": 3, "keep_daily": 7},
    }
    req = urllib.request.Request(f"{base}/v1/policies", json.dumps(body).encode(),
                                 {"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
EOF
id=$(curl -sf "$base/v1/policies?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')

echo "date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD); load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| endpoint | req/s | p50 | p99 | errors |\n|---|---|---|---|---|\n'
for path in "/v1/policies/$id" "/v1/policies?limit=50" "/v1/jobs?limit=50" "/v1/status"; do
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency "$base$path")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {e = e $0 "; "} END {print (e == "" ? "0" : e)}' <<<"$out")
  shown=${path/$id/\{id\}}
  printf '| GET %s | %s | %s | %s | %s |\n' "$shown" "$rps" "$p50" "$p99" "$errors"
done
echo "service peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$service/status); load after: $(cut -d' ' -f1-3 /proc/loadavg)"
