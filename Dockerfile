# flowgate container image (docs/operations.md, "Container image").
#
#   docker build \
#     --build-arg VERSION="$(git describe --tags --always)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" \
#     -t flowgate:local .
#   docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     -v flowgate-data:/data -v "$PWD/flowgate.yaml:/etc/flowgate/flowgate.yaml:ro" \
#     -p 127.0.0.1:8080:8080 flowgate:local
#
# Targets:
#   flowgate (default, the last stage)  the gateway + the claude-flow engine (claude-flow-v2
#                                       profile) at a pinned version, on Node.js slim
#   flowgate-static                     the gateway alone on scratch: the sim engine, or an
#                                       engine you mount (docker build --target flowgate-static)
#
# Base images are pinned by exact tag. To pin by digest as well (recommended for release
# builds), pass the digest through the same build args, without editing this file:
#   docker buildx imagetools inspect golang:1.26.8-bookworm      # prints the index digest
#   docker build --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:<digest> \
#                --build-arg NODE_IMAGE=node:22.21.1-bookworm-slim@sha256:<digest> .
#
# The runtime is read-only-root-filesystem friendly: the only writable paths are /data (state,
# task working directories under /data/tasks) and /tmp; mount a volume or tmpfs on each.
# Needs BuildKit (Docker >= 23 by default) for the RUN cache mounts; no "# syntax=" line, so no
# unpinned frontend image is pulled.

ARG GO_IMAGE=golang:1.26.8-bookworm
ARG NODE_IMAGE=node:22.21.1-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: a static, reproducible flowgate binary.
FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download && go mod verify
COPY . .
ARG VERSION=0.0.0-dev
ARG COMMIT=unknown
# timetzdata: the scratch image has no zoneinfo.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/flowgate ./cmd/flowgate \
 && go build -trimpath -ldflags "-s -w" -o /out/flowgate-init ./cmd/flowgate-init \
 && /out/flowgate version
# Directories owned by the runtime user, created here because the runtime images have no shell
# (scratch) or should not need one.
RUN install -d -m 0700 -o 10001 -g 10001 /out/data /out/data/tasks /out/tmp

# ---------------------------------------------------------------------------------------------
# engine: claude-flow at an exact version, installed without running any package script.
# Never `npx claude-flow@alpha`: nothing is downloaded at run time.
FROM ${NODE_IMAGE} AS engine
ARG CLAUDE_FLOW_VERSION=2.7.47
RUN echo "${CLAUDE_FLOW_VERSION}" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$' \
      || { echo "CLAUDE_FLOW_VERSION must be an exact version, got '${CLAUDE_FLOW_VERSION}'" >&2; exit 1; } \
 && npm install --global --prefix /opt/claude-flow --ignore-scripts --omit=optional --omit=dev \
      --no-audit --no-fund --no-update-notifier "claude-flow@${CLAUDE_FLOW_VERSION}" \
 && node -e 'const v=require("/opt/claude-flow/lib/node_modules/claude-flow/package.json").version; if (v !== process.argv[1]) { console.error("installed claude-flow " + v); process.exit(1) }' "${CLAUDE_FLOW_VERSION}" \
 && npm cache clean --force

# ---------------------------------------------------------------------------------------------
# flowgate-static: the gateway alone. Engines: sim (this binary), or custom/claude-code with a
# binary you add in a derived image.
FROM scratch AS flowgate-static
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/flowgate /usr/local/bin/flowgate
# The small sandbox init every task starts (found next to flowgate; see cmd/flowgate-init).
COPY --from=build /out/flowgate-init /usr/local/bin/flowgate-init
COPY --from=build --chown=10001:10001 /out/data /data
COPY --from=build --chown=10001:10001 /out/tmp /tmp
COPY configs/flowgate.yaml /etc/flowgate/flowgate.yaml
ENV FLOWGATE_DATA_DIR=/data \
    FLOWGATE_SERVER_ADDR=:8080 \
    FLOWGATE_OPS_ADDR=:9090 \
    FLOWGATE_ENGINE_PROFILE=sim \
    PATH=/usr/local/bin
USER 10001:10001
WORKDIR /data
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/flowgate", "healthcheck", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/flowgate"]
CMD ["serve", "--config", "/etc/flowgate/flowgate.yaml"]

# ---------------------------------------------------------------------------------------------
# flowgate (default): the gateway with claude-flow. Node.js is needed at run time by the
# engine; npm, npx, corepack and yarn are removed, and so are set-uid/set-gid bits.
FROM ${NODE_IMAGE} AS flowgate
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} + \
 && { userdel --remove node 2>/dev/null || true; }
COPY --from=engine /opt/claude-flow /opt/claude-flow
COPY --from=build /out/flowgate /usr/local/bin/flowgate
COPY --from=build /out/flowgate-init /usr/local/bin/flowgate-init
COPY --from=build --chown=10001:10001 /out/data /data
COPY configs/flowgate.yaml /etc/flowgate/flowgate.yaml
ENV FLOWGATE_DATA_DIR=/data \
    FLOWGATE_SERVER_ADDR=:8080 \
    FLOWGATE_OPS_ADDR=:9090 \
    FLOWGATE_ENGINE_PROFILE=claude-flow-v2 \
    FLOWGATE_ENGINE_COMMAND=/opt/claude-flow/bin/claude-flow \
    PATH=/opt/claude-flow/bin:/usr/local/bin:/usr/bin:/bin
USER 10001:10001
WORKDIR /data
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/flowgate", "healthcheck", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/flowgate"]
CMD ["serve", "--config", "/etc/flowgate/flowgate.yaml"]
