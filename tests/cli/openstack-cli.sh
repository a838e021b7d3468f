#!/usr/bin/env bash
# CLI fidelity test: the official `openstack` client, unchanged, against `stacksnap sim`.
#
#   tests/cli/openstack-cli.sh
#
# Creates (once) a virtualenv under target/cli-venv with the pinned
# python-openstackclient (tests/cli/requirements.txt), builds stacksnap,
# starts `stacksnap sim` on a free port with --clouds-yaml, runs server
# create (image- and volume-backed), server list/show, server image create
# --wait, image create/list/show, volume create/list, volume snapshot
# list/show, and checks what comes back. Exits non-zero on the first
# failure; always stops the simulator. Needs python3 with venv, and PyPI on
# the first run only (or pip's cache). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/target/cli-venv
REQS=$ROOT/tests/cli/requirements.txt
WORK=$(mktemp -d)
SIM_PID=

say() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; [ -f "$WORK/sim.log" ] && tail -20 "$WORK/sim.log" >&2; exit 1; }
cleanup() {
  if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "python-openstackclient in $VENV"
if ! cmp -s "$REQS" "$VENV/.requirements" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  WHEELS=$(python3 -m pip cache dir 2>/dev/null || true)/osrig-wheelhouse
  FIND_LINKS=()
  [ -d "$WHEELS" ] && FIND_LINKS=(--find-links "$WHEELS")
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${FIND_LINKS[@]}" -r "$REQS"
  cp "$REQS" "$VENV/.requirements"
fi
OS="$VENV/bin/openstack"
PY="$VENV/bin/python"
"$OS" --version

say "stacksnap sim"
cargo build --quiet --bin stacksnap
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET/debug/stacksnap" --log-format json sim --listen "127.0.0.1:$PORT" --clouds-yaml "$WORK/clouds.yaml" --fast --seed 7 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/_sim/health" >/dev/null 2>&1 && break
  kill -0 "$SIM_PID" 2>/dev/null || fail "stacksnap sim exited"
  sleep 0.1
done
export OS_CLIENT_CONFIG_FILE=$WORK/clouds.yaml OS_CLOUD=stacksnap-sim
unset OS_AUTH_URL OS_USERNAME OS_PASSWORD OS_PROJECT_NAME OS_PROJECT_ID OS_TOKEN OS_AUTH_TYPE \
  OS_USER_DOMAIN_NAME OS_PROJECT_DOMAIN_NAME OS_REGION_NAME OS_INTERFACE OS_IDENTITY_API_VERSION

# field JSON EXPR: evaluates a Python expression over the parsed JSON `d`.
field() { "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
expect() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }

say "image create --file (Glance upload)"
printf 'stacksnap simulator image data\n' >"$WORK/disk.img"
IMG=$("$OS" image create --disk-format qcow2 --container-format bare --file "$WORK/disk.img" --property hw_qemu_guest_agent=yes uploaded -f json)
expect "$(field "$IMG" 'd["status"]')" active "uploaded image status"
expect "$(field "$IMG" 'd["checksum"]')" "$(md5sum "$WORK/disk.img" | cut -d' ' -f1)" "uploaded image checksum"

say "server create (image-backed)"
S1=$("$OS" server create --image tiny --flavor m1.tiny --nic none --wait srv-img -f json)
expect "$(field "$S1" 'd["status"]')" ACTIVE "srv-img status"

say "server create (volume-backed, --boot-from-volume)"
S2=$("$OS" server create --image tiny --boot-from-volume 1 --flavor m1.tiny --nic none --wait srv-bfv -f json)
expect "$(field "$S2" 'd["status"]')" ACTIVE "srv-bfv status"

say "volume create + server create --block-device (root and data volume)"
ROOT_VOL=$("$OS" volume create --size 1 --image tiny root-vol -f value -c id)
DATA_VOL=$("$OS" volume create --size 1 data-vol -f value -c id)
for v in "$ROOT_VOL" "$DATA_VOL"; do
  for _ in $(seq 1 50); do [ "$("$OS" volume show "$v" -f value -c status)" = available ] && break; sleep 0.2; done
  expect "$("$OS" volume show "$v" -f value -c status)" available "volume $v status"
done
S3=$("$OS" server create --flavor m1.tiny --nic none \
  --block-device "uuid=$ROOT_VOL,source_type=volume,destination_type=volume,boot_index=0,delete_on_termination=false" \
  --block-device "uuid=$DATA_VOL,source_type=volume,destination_type=volume,boot_index=-1,delete_on_termination=false" \
  --wait srv-2vol -f json)
expect "$(field "$S3" 'd["status"]')" ACTIVE "srv-2vol status"

say "server list / server show"
LIST=$("$OS" server list -f json)
expect "$(field "$LIST" 'sorted(s["Name"] for s in d)')" "['srv-2vol', 'srv-bfv', 'srv-img']" "server list"
expect "$(field "$LIST" '[s["Image"] for s in d if s["Name"] == "srv-bfv"][0]')" "N/A (booted from volume)" "srv-bfv image column"
SHOW=$("$OS" server show srv-2vol -f json)
expect "$(field "$SHOW" 'len(d["volumes_attached"])')" 2 "srv-2vol volumes_attached"
expect "$(field "$SHOW" 'd["OS-EXT-STS:task_state"]')" None "srv-2vol task_state"

say "server image create --wait (image-backed)"
SNAP1=$("$OS" server image create --wait --name snap-img --property stacksnap_job_id=job-1 srv-img -f json)
expect "$(field "$SNAP1" 'd["status"]')" active "snap-img status"
expect "$(field "$SNAP1" 'd["properties"]["image_type"]')" snapshot "snap-img image_type"
expect "$(field "$SNAP1" 'd["properties"]["stacksnap_job_id"]')" job-1 "snap-img metadata"

say "server image create --wait (volume-backed, two volumes)"
SNAP2=$("$OS" server image create --wait --name snap-2vol srv-2vol -f json)
expect "$(field "$SNAP2" 'd["status"]')" active "snap-2vol status"

say "image list / image show"
IMAGES=$("$OS" image list -f json)
expect "$(field "$IMAGES" 'sorted(i["Name"] for i in d)')" "['snap-2vol', 'snap-img', 'tiny', 'uploaded']" "image list"
SHOW2=$("$OS" image show snap-2vol -f json)
expect "$(field "$SHOW2" 'd["size"]')" 0 "snap-2vol size"
expect "$(field "$SHOW2" 'd["properties"]["bdm_v2"]')" True "snap-2vol bdm_v2"
expect "$(field "$SHOW2" '"image_type" in d["properties"]')" False "snap-2vol has no image_type"
SNAP_IDS=$(field "$SHOW2" '" ".join(sorted(b["snapshot_id"] for b in json.loads(d["properties"]["block_device_mapping"])))')
expect "$(echo "$SNAP_IDS" | wc -w)" 2 "snap-2vol block_device_mapping entries"

say "volume list"
VOLS=$("$OS" volume list -f json)
expect "$(field "$VOLS" 'sorted(v["Status"] for v in d)')" "['in-use', 'in-use', 'in-use']" "volume list statuses"
expect "$(field "$VOLS" '[v["Attached to"][0]["device"] for v in d if v["Name"] == "data-vol"][0]')" /dev/vdb "data-vol device"
expect "$(field "$VOLS" '[v["Attached to"][0]["server_id"] for v in d if v["Name"] == "data-vol"][0]')" "$(field "$S3" 'd["id"]')" "data-vol server"

say "volume snapshot list / show"
for id in $SNAP_IDS; do
  for _ in $(seq 1 50); do [ "$("$OS" volume snapshot show "$id" -f value -c status)" = available ] && break; sleep 0.2; done
  SS=$("$OS" volume snapshot show "$id" -f json)
  expect "$(field "$SS" 'd["status"]')" available "snapshot $id status"
  expect "$(field "$SS" 'd["name"]')" "snapshot for snap-2vol" "snapshot $id name"
done
SNAPS=$("$OS" volume snapshot list -f json)
expect "$(field "$SNAPS" '" ".join(sorted(s["ID"] for s in d))')" "$SNAP_IDS" "volume snapshot list"

say "request log"
CREATES=$(curl -fsS "http://127.0.0.1:$PORT/_sim/requests" | "$PY" -c 'import json, sys; print(sum(r["operation"] == "nova.create_image" for r in json.load(sys.stdin)))')
expect "$CREATES" 2 "createImage calls"

echo
echo "openstack CLI fidelity: PASS"
