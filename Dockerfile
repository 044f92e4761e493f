# syntax=docker/dockerfile:1
#
# edge-node container image: Debian 12 runtime with GStreamer 1.22, ONNX Runtime
# 1.32 (from the PyPI wheel) and the bundled NanoDet-g COCO model.
#
#   docker build -t edge-node .
#   docker run --rm -v "$PWD/pipelines:/etc/edge-node/pipelines:ro" edge-node
#
# Lint with scripts/lint-docker.sh (hadolint). The build machines have a docker
# client but no daemon, so this file is linted in CI but never built there.

# ---- build stage -------------------------------------------------------------
FROM rust:1.95-bookworm AS build

# -dev packages for gstreamer-rs; python3-pip for scripts/fetch-onnxruntime.sh
# (`pip download` of the onnxruntime wheel).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev \
      pkg-config libssl-dev python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The repo's .cargo/config.toml may point target-dir at a developer path;
# the environment variable wins over it.
ENV CARGO_TARGET_DIR=/src/target

# ONNX Runtime first: it changes far less often than the sources, so this
# layer stays cached across code changes.
COPY scripts/fetch-onnxruntime.sh scripts/fetch-centerface.sh scripts/
RUN scripts/fetch-onnxruntime.sh /opt/onnxruntime \
 && scripts/fetch-centerface.sh /opt/edge-node-models

COPY . .
# Cache mounts keep the crate registry and incremental artifacts between
# builds; the binary is copied out because the target cache is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edge-node \
 && install -m 0755 /src/target/release/edge-node /usr/local/bin/edge-node

# ---- runtime stage -----------------------------------------------------------
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="edge-node" \
      org.opencontainers.image.description="Edge video analytics: camera streams -> ONNX detector -> tracked events -> MQTT" \
      org.opencontainers.image.licenses="Apache-2.0"

# GStreamer plugins: base (decodebin, videoconvert, appsink), good (RTSP, MP4,
# RTP), bad (h264parse/h265parse), ugly (x264enc for test clips), libav
# (avdec_h264/h265); the RTSP server library is linked by the binary.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav libgstrtspserver-1.0-0 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Fixed uid/gid 10001 so mounted state and config volumes can be chowned
# predictably; USER below is numeric so runtimes can check "non-root" without
# reading /etc/passwd (Kubernetes runAsNonRoot).
# The home directory doubles as the state directory (heartbeat, outbox) and
# holds GStreamer's plugin registry cache (~/.cache), so start-up does not
# rescan every plugin on each run.
RUN groupadd --system --gid 10001 edge \
 && useradd --system --uid 10001 --gid edge --home-dir /var/lib/edge-node \
      --create-home --shell /usr/sbin/nologin edge

COPY --from=build /opt/onnxruntime /opt/onnxruntime
COPY --from=build /opt/edge-node-models/centerface_dynamic.onnx /usr/share/edge-node/models/
COPY --from=build /usr/local/bin/edge-node /usr/local/bin/edge-node
# The default model and its manifest (nanodet_g_coco_416.onnx + .json).
COPY models/*.onnx models/*.json models/NOTICE /usr/share/edge-node/models/
COPY pipelines/ /etc/edge-node/pipelines/
COPY LICENSE /usr/share/doc/edge-node/LICENSE

ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.1.32.0 \
    EDGE_NODE_STATE_DIR=/var/lib/edge-node \
    RUST_LOG=info

USER 10001:10001
WORKDIR /var/lib/edge-node

# Healthy = the daemon's heartbeat file ($EDGE_NODE_STATE_DIR/heartbeat,
# rewritten every 5 s by the running node) is younger than 30 s and lists no
# problem: the broker unreachable past [node] broker_unhealthy_s while the
# outbox grows, a streaming camera with no analysed frame past its watchdog,
# inference making no progress while frames wait, the outbox store or
# delivery failing (README, "Health"). Exit 1 names which.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["edge-node", "healthcheck", "--max-age", "30"]

ENTRYPOINT ["edge-node"]
CMD ["run", "/etc/edge-node/pipelines/rtsp-camera.toml"]
