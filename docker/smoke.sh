#!/usr/bin/env bash
# Build the CPU and Prometheus images and smoke-test the compose stack on this machine:
# readiness, transcriptions (files, and a live stream) over the published port, Prometheus scraping the service, and a
# restart that must become ready from the quantization cache faster than the first start.
# Installs Docker (Debian's docker.io, debootstrap, docker-compose) and starts dockerd if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=/usr/bin/docker  # Debian's client: BuildKit built in
export DOCKER_BUILDKIT=1 COMPOSE_PROJECT_NAME=qasrsmoke

if [ ! -x "$DOCKER" ] || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q docker.io debootstrap docker-compose >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    (dockerd >/tmp/dockerd.log 2>&1 &)
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
fi
DOCKER=$DOCKER docker/make-base-image.sh

build_args=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    build_args+=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
fi
if ls /opt/wheels/torch-*.whl >/dev/null 2>&1; then  # this machine's local CPU torch wheel
    cp -u /opt/wheels/torch-*.whl docker/wheels/
    build_args+=(--build-arg TORCH_INDEX=)
fi
"$DOCKER" build -q -f docker/Dockerfile "${build_args[@]}" -t qasr:cpu . >/dev/null
"$DOCKER" build -q -f docker/Dockerfile.prometheus -t qasr-prometheus docker >/dev/null
echo "image sizes: $("$DOCKER" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^qasr' | tr '\n' ' ')"

compose() { docker-compose -f docker-compose.yml "$@"; }
cleanup() { compose down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

seconds_until_ready() {
    local start=$SECONDS
    until curl -sf http://127.0.0.1:8000/health/ready >/dev/null; do
        if [ $((SECONDS - start)) -gt 900 ]; then echo "not ready after 900 s" >&2; compose logs qasr >&2; exit 1; fi
        sleep 1
    done
    echo $((SECONDS - start))
}

compose up -d
first=$(seconds_until_ready)
echo "first start ready in ${first} s (quantized the shipped model)"

clip=$(mktemp --suffix .wav)
espeak-ng -w "$clip" "the quick brown fox jumps over the lazy dog"
reply=$(curl -sf -F "file=@$clip" http://127.0.0.1:8000/v1/transcribe)
echo "transcribed: $reply" | cut -c1-300
python3 -c 'import json, sys; body = json.loads(sys.argv[1]); assert body["duration"] > 1 and "words" in body' "$reply"
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["decoder"] == "lexicon"' "$reply"  # auto, shipped model
ready=$(curl -sf http://127.0.0.1:8000/health/ready)
echo "ready: $ready"
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["search_workers"] >= 1' "$ready"  # one per core
openai=$(curl -sf -F "file=@$clip" -F model=whisper-1 -F response_format=text http://127.0.0.1:8000/v1/audio/transcriptions)
echo "openai-compatible (text): $openai"
boosted=$(curl -sf -F "file=@$clip" -F 'hotwords=quick, jumps, "lazy dog"' http://127.0.0.1:8000/v1/transcribe)
echo "with hotwords: $boosted" | cut -c1-300
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["hotwords"] == ["quick", "jumps", "lazy dog"]' "$boosted"
m4a=$(mktemp --suffix .m4a)  # AAC in M4A, as a phone records it, made by the test suite's PyAV helper
.venv/bin/python -c 'import sys, numpy as np, soundfile; from tests.test_audio import encoded
x, rate = soundfile.read(sys.argv[1], dtype="float32"); open(sys.argv[2], "wb").write(encoded(np.stack([x, x]), rate, "ipod", "aac"))' "$clip" "$m4a"
from_m4a=$(curl -sf -F "file=@$m4a" http://127.0.0.1:8000/v1/transcribe)
echo "from M4A: $from_m4a" | cut -c1-200
python3 -c 'import json, sys; body = json.loads(sys.argv[1]); assert body["duration"] > 1 and body["text"]' "$from_m4a"
.venv/bin/python - "$clip" <<'LIVE'  # a live stream: the clip in 100 ms messages over the WebSocket
import json, sys, soundfile
from websockets.sync.client import connect
samples, rate = soundfile.read(sys.argv[1], dtype="int16")
with connect(f"ws://127.0.0.1:8000/v1/listen?sample_rate={rate}") as socket:
    for start in range(0, len(samples), rate // 10):
        socket.send(samples[start : start + rate // 10].tobytes())
    socket.send(json.dumps({"type": "CloseStream"}))
    messages = [json.loads(message) for message in socket]
finals = [m["channel"]["alternatives"][0]["transcript"] for m in messages if m["type"] == "Results"]
print("live stream:", " | ".join(finals))
assert messages[-1]["type"] == "Metadata" and abs(messages[-1]["duration"] - len(samples) / rate) < 0.01
assert " ".join(finals).strip()
LIVE

for _ in $(seq 60); do
    up=$(curl -sf 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22qasr%22%7D' \
        | python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
    [ "$up" = "1" ] && break
    sleep 2
done
[ "$up" = "1" ] || { echo "Prometheus never scraped qasr (up=$up)" >&2; exit 1; }
echo "Prometheus: up{job=\"qasr\"} == 1"

compose restart qasr
second=$(seconds_until_ready)
echo "restart ready in ${second} s (from the cache volume)"
logs=$(compose logs qasr 2>&1)
grep -q "using cached quantized model" <<<"$logs" || { echo "restart did not use the cache" >&2; exit 1; }
[ "$second" -lt "$first" ] || { echo "restart ($second s) was not faster than the first start ($first s)" >&2; exit 1; }
QASR_DECODER=greedy docker-compose -f docker-compose.yml up -d qasr  # recreated with greedy decoding, same cache volume
seconds_until_ready >/dev/null
curl -sf http://127.0.0.1:8000/health/ready | python3 -c 'import json, sys; assert json.load(sys.stdin)["language_model"] is None'
greedy=$(curl -sf -F "file=@$clip" http://127.0.0.1:8000/v1/transcribe)
echo "greedy decoding: $greedy" | cut -c1-300
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["decoder"] == "greedy"' "$greedy"
echo "docker smoke test passed"
