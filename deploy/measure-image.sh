#!/usr/bin/env bash
# Measure the serving image: build time (cold, no cache), size, and time from `docker run` to the
# first 200 from /readyz (median of N starts), memory once ready, and the server's peak resident
# memory while answering a 1,000,000-digit number. Prints one line per number.
#
#   deploy/measure-image.sh                      # base image: the Dockerfile's default
#   BASE_IMAGE=local/python-base deploy/measure-image.sh    # e.g. the CI stand-in
#   RUNS=7 deploy/measure-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${TAG:-rnn-counter:measure}"
RUNS="${RUNS:-5}"
BUILD_ARGS=()
[ -n "${BASE_IMAGE:-}" ] && BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

now() { date +%s.%N; }
seconds_since() { awk -v end="$(now)" -v start="$1" 'BEGIN { printf "%.2f", end - start }'; }
megabytes() { awk -v bytes="$1" 'BEGIN { printf "%.0f", bytes / 1e6 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

t0="$(now)"
if ! log="$(docker build --no-cache "${BUILD_ARGS[@]}" --tag "$TAG" . 2>&1)"; then
  echo "$log" >&2
  exit 1
fi
echo "build (cold, no cache): $(seconds_since "$t0") s"

size="$(docker image inspect --format '{{.Size}}' "$TAG")"
echo "image size: $(megabytes "$size") MB"
base="${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)}"
if base_size="$(docker image inspect --format '{{.Size}}' "$base" 2>/dev/null)"; then
  echo "  of which base $base: $(megabytes "$base_size") MB," \
    "added by the app: $(megabytes $((size - base_size))) MB"
fi

starts=()
for _ in $(seq 1 "$RUNS"); do
  t0="$(now)"
  id="$(docker run --detach --publish 127.0.0.1::8000 --read-only --tmpfs /tmp \
    --cap-drop ALL --security-opt no-new-privileges "$TAG")"
  url="http://$(docker port "$id" 8000/tcp | head -n 1)"
  until curl --noproxy '*' --silent --fail --output /dev/null "$url/readyz"; do
    if [ "$(docker inspect --format '{{.State.Running}}' "$id")" != true ]; then
      docker logs "$id" >&2
      docker rm --force "$id" >/dev/null
      exit 1
    fi
    sleep 0.05
  done
  starts+=("$(seconds_since "$t0")")
  memory="$(docker stats --no-stream --format '{{.MemUsage}}' "$id" | cut -d/ -f1)"
  last_id="$id" last_url="$url"
  if [ "${#starts[@]}" -lt "$RUNS" ]; then docker rm --force "$id" >/dev/null; fi
done
echo "docker run -> first /readyz 200: median $(printf '%s\n' "${starts[@]}" | median) s" \
  "over $RUNS starts (${starts[*]})"
echo "memory once ready: $memory"

# The longest input the default settings accept: a carry through 999,999 nines.
printf '{"number": "1%s"}' "$(head -c 999999 /dev/zero | tr '\0' 9)" |
  curl --noproxy '*' --silent --fail --output /dev/null --header 'content-type: application/json' \
    --data-binary @- "$last_url/increment" || {
  echo "the 1,000,000-digit request failed" >&2
  docker rm --force "$last_id" >/dev/null
  exit 1
}
peak_kib="$(docker exec "$last_id" cat /proc/1/status | awk '/^VmHWM:/ { print $2 }')"
docker rm --force "$last_id" >/dev/null
echo "peak resident memory of the server, answering a 1,000,000-digit number:" \
  "$(awk -v kib="$peak_kib" 'BEGIN { printf "%.0f MiB", kib / 1024 }')"
