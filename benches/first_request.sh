#!/usr/bin/env bash
# Run-now of a 50-server policy until every createImage has reached the cloud, against a loop of
# `openstack server image create` calls (issue 13, item 5).
#
#   benches/first_request.sh                 # 50 servers, 3 rounds each
#   FIRST_SERVERS=100 FIRST_ROUNDS=5 benches/first_request.sh
#   FIRST_CLI=0 FIRST_LOG=stacksnap=debug FIRST_KEEP=/tmp/trace benches/first_request.sh
#                                            # stacksnap only; keep its log and each round's request log
#
# Builds the release binary, starts `stacksnap sim` (seconds-long transitions, as in `stacksnap demo`)
# seeded with the servers, and `stacksnap serve --auth none` against it on a fresh database
# `stacksnap_firstbench`. Each round clears the simulator's request log, then measures from just before
# the request (`POST /v1/policies/{id}/run`, or the first CLI call) to the arrival of the last
# `nova.create_image` in that log. The CLI is python-openstackclient (tests/cli/requirements.txt), in
# target/cli-venv as tests/cli/openstack-cli.sh makes it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

servers=${FIRST_SERVERS:-50}
rounds=${FIRST_ROUNDS:-3}
sim_port=${FIRST_SIM_PORT:-15000}
api_port=${FIRST_API_PORT:-18081}
db=${FIRST_DB:-stacksnap_firstbench}
cli=${FIRST_CLI:-1}
keep=${FIRST_KEEP:-}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$work"/*.log "$work"/*.json "$keep"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

venv=$ROOT/target/cli-venv
reqs=$ROOT/tests/cli/requirements.txt
if ! cmp -s "$reqs" "$venv/.requirements" 2>/dev/null; then
  rm -rf "$venv" && python3 -m venv "$venv"
  wheels=$(python3 -m pip cache dir 2>/dev/null || true)/osrig-wheelhouse
  links=() && [ -d "$wheels" ] && links=(--find-links "$wheels")
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${links[@]}" -r "$reqs"
  cp "$reqs" "$venv/.requirements"
fi

# FIRST_BUILD=0 measures the binary already built (while another build of the tree is under way).
[ "${FIRST_BUILD:-1}" = 0 ] || cargo build --release --quiet --bin stacksnap
python3 - "$servers" >"$work/inventory.json" <<'EOF'
import json, sys, uuid
n = int(sys.argv[1])
print(json.dumps({"images": [{"name": "tiny", "size": 196616}],
                  "servers": [{"id": str(uuid.uuid4()), "name": f"s{i}", "image": "tiny"} for i in range(n)]}))
EOF
RUST_LOG=warn target/release/stacksnap sim --listen "127.0.0.1:$sim_port" --inventory "$work/inventory.json" \
  --clouds-yaml "$work/clouds.yaml" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$sim_port/_sim/health" >/dev/null && break; sleep 0.1; done

psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db" -c "create database $db" postgres
export OS_CLIENT_CONFIG_FILE=$work/clouds.yaml OS_CLOUD=stacksnap-sim
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" RUST_LOG=${FIRST_LOG:-warn} \
  target/release/stacksnap serve --auth none --listen "127.0.0.1:$api_port" >"$work/service.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null && break; sleep 0.2; done

echo "date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD); load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/inventory.json" "$sim_port" "$api_port" "$rounds" "$venv/bin/openstack" "$cli" "$work" <<'EOF'
import json, re, statistics, subprocess, sys, time, urllib.request
from datetime import datetime

inventory, sim_port, api_port, rounds, osc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
with_cli, work = sys.argv[6] == "1", sys.argv[7]
ids = [s["id"] for s in json.load(open(inventory))["servers"]]
sim, api = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"

def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"content-type": "application/json"}, method=method)
    with urllib.request.urlopen(req) as r:
        text = r.read()
    return json.loads(text) if text else None

def parse(at):
    # RFC 3339 with nanoseconds: Python reads at most microseconds.
    at = re.sub(r"(\.\d{6})\d+", r"\1", at.replace("Z", "+00:00"))
    return datetime.fromisoformat(at).timestamp()

def requests():
    log = call("GET", f"{sim}/_sim/requests")
    return log if isinstance(log, list) else log.get("requests", [])

def creates(rows=None):
    rows = requests() if rows is None else rows
    return [parse(r["at"]) for r in rows if r["operation"] == "nova.create_image" and r["status"] < 300]

def trace(label, t0):
    # Where the time went: the first call of each kind, and the calls sent per job.
    rows = requests()
    json.dump(rows, open(f"{work}/{label}.requests.json", "w"))
    first = {}
    for r in rows:
        first.setdefault(r["operation"], parse(r["at"]) - t0)
    at = sorted(creates(rows))
    print(f"  {label}: {len(rows)} calls; first call of each kind (s after the request): "
          + ", ".join(f"{op} {t:.3f}" for op, t in first.items())
          + f"; createImage first {at[0] - t0:.3f}, median {at[len(at) // 2] - t0:.3f}, last {at[-1] - t0:.3f}",
          flush=True)

def last_create_after(t0, deadline=600):
    while True:
        at = creates()
        if len(at) >= len(ids):
            return max(at) - t0
        if time.time() - t0 > deadline:
            raise SystemExit(f"only {len(at)} of {len(ids)} createImage calls after {deadline} s")
        time.sleep(0.02)

policy = call("POST", f"{api}/v1/policies", {
    "name": "first-request", "resource_type": "server", "targets": {"ids": ids},
    "schedules": [{"cron": "0 3 1 1 *", "timezone": "UTC"}], "retention": {"keep_last": 100}})

def settle():
    # Every job of the last round ended, so the next round's run is not refused or slowed by it.
    while call("GET", f"{api}/v1/jobs?status=creating&limit=1")["items"] or \
          call("GET", f"{api}/v1/jobs?status=tracking&limit=1")["items"] or \
          call("GET", f"{api}/v1/jobs?status=pending&limit=1")["items"]:
        time.sleep(0.5)

service, cli = [], []
for n in range(rounds):
    settle()
    call("DELETE", f"{sim}/_sim/requests")
    t0 = time.time()
    call("POST", f"{api}/v1/policies/{policy['id']}/run")
    service.append(last_create_after(t0))
    trace(f"stacksnap-{n + 1}", t0)
def settle_servers():
    # No server in a task state (Nova refuses createImage during image_snapshot): the last round's
    # images are still being made when its jobs (stacksnap's or the CLI's) have sent their creates.
    while any(s.get("Task State") for s in json.loads(subprocess.run(
            [osc, "server", "list", "--long", "-f", "json"], check=True, capture_output=True).stdout)):
        time.sleep(1)

for _ in range(rounds if with_cli else 0):
    settle()
    settle_servers()
    call("DELETE", f"{sim}/_sim/requests")
    t0 = time.time()
    for i, sid in enumerate(ids):
        subprocess.run([osc, "server", "image", "create", "--name", f"cli-{i}-{t0}", sid],
                       check=True, stdout=subprocess.DEVNULL)
    cli.append(last_create_after(t0))

s = statistics.median(service)
if not cli:
    print(f"| servers | stacksnap run-now (median of {rounds}) |\n|---|---|\n"
          f"| {len(ids)} | {s:.3f} s ({', '.join(f'{x:.3f}' for x in service)}) |")
    sys.exit(0)
c = statistics.median(cli)
print(f"| servers | stacksnap run-now (median of {rounds}) | CLI loop (median of {rounds}) | ratio |")
print("|---|---|---|---|")
print(f"| {len(ids)} | {s:.3f} s ({', '.join(f'{x:.3f}' for x in service)}) | "
      f"{c:.1f} s ({', '.join(f'{x:.1f}' for x in cli)}) | **{c / s:.0f}×** |")
EOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
