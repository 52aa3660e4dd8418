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
#   flowgate (default, the last stage)  the gateway + both real engines at exact versions, on
#                                       Node.js slim: claude-flow in /opt/claude-flow (the
#                                       claude-flow-v2 profile, engine.command) and Claude Code
#                                       in /opt/claude-code (the `claude` claude-flow runs,
#                                       engine.claude_command; also the claude-code profile)
#   flowgate-static                     the gateway alone on scratch: the sim engine, or an
#                                       engine you mount (docker build --target flowgate-static)
#
# Engine versions: CLAUDE_CODE_VERSION and CLAUDE_FLOW_VERSION below, equal to the pins in
# scripts/engines.env (internal/deploycheck fails when they differ). Exact versions only; the
# build fails on a range or a tag. The default stage runs both engines' `--version` as the
# runtime user at build time and fails unless each prints its pinned version.
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
# The one place in this file that names the engine versions: keep equal to scripts/engines.env.
ARG CLAUDE_CODE_VERSION=2.1.332
ARG CLAUDE_FLOW_VERSION=2.7.47

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
# engine: Claude Code and claude-flow at exact versions, each under its own npm prefix, installed
# without running any package script (the one script run is Claude Code's install.cjs, by
# name). Never `npx claude-flow@alpha`: nothing is downloaded at run time.
FROM ${NODE_IMAGE} AS engine
ARG CLAUDE_CODE_VERSION
ARG CLAUDE_FLOW_VERSION
RUN for v in "${CLAUDE_CODE_VERSION}" "${CLAUDE_FLOW_VERSION}"; do \
      echo "$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$' \
        || { echo "CLAUDE_CODE_VERSION and CLAUDE_FLOW_VERSION must be exact versions, got '$v'" >&2; exit 1; }; \
    done
# Claude Code: the package's bin/claude.exe is a placeholder until install.cjs (its postinstall,
# skipped by --ignore-scripts) places the native binary of the platform package, an optional
# dependency, over it. install.cjs hard-links it; the platform package is then removed so that
# no builder stores the ~400 MB binary twice. bin/claude is a symlink to bin/claude.exe.
RUN npm install --global --prefix /opt/claude-code --ignore-scripts --include=optional --omit=dev \
      --no-audit --no-fund --no-update-notifier "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
 && cd /opt/claude-code/lib/node_modules/@anthropic-ai/claude-code \
 && node install.cjs \
 && rm -rf node_modules \
 && node -e 'const v=require("/opt/claude-code/lib/node_modules/@anthropic-ai/claude-code/package.json").version; if (v !== process.argv[1]) { console.error("installed claude-code " + v); process.exit(1) }' "${CLAUDE_CODE_VERSION}" \
 && npm cache clean --force
# claude-flow: --omit=optional keeps its nested copy of Claude Code (a dependency it never runs:
# it runs the `claude` on PATH, engine.claude_command's directory) from pulling native binaries.
RUN npm install --global --prefix /opt/claude-flow --ignore-scripts --omit=optional --omit=dev \
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
# GOGC=50: the collector runs at 1.5× the live heap instead of 2×; idle connections then cost
# ≈ 6.9 KiB of RSS each instead of ≈ 8.2, for no measurable CPU (docs/operations.md, "Gateway memory").
ENV FLOWGATE_DATA_DIR=/data \
    FLOWGATE_SERVER_ADDR=:8080 \
    FLOWGATE_OPS_ADDR=:9090 \
    FLOWGATE_ENGINE_PROFILE=sim \
    GOGC=50 \
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
# flowgate (default): the gateway with claude-flow and Claude Code. Node.js is needed at run
# time by claude-flow; npm, npx, corepack and yarn are removed, and so are set-uid/set-gid bits.
# The gateway grants each engine read/execute on the npm package root of its binaries (under
# /opt, a default read path).
FROM ${NODE_IMAGE} AS flowgate
ARG CLAUDE_CODE_VERSION
ARG CLAUDE_FLOW_VERSION
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} + \
 && { userdel --remove node 2>/dev/null || true; }
COPY --from=engine /opt/claude-code /opt/claude-code
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
    FLOWGATE_ENGINE_CLAUDE_COMMAND=/opt/claude-code/bin/claude \
    GOGC=50 \
    PATH=/opt/claude-flow/bin:/opt/claude-code/bin:/usr/local/bin:/usr/bin:/bin
USER 10001:10001
# Both engines really run here, as the runtime user, from the configured paths: the build fails
# unless each prints its pinned version (Claude Code "<version> (Claude Code)", claude-flow
# "v<version>"). A missing native binary leaves Claude Code's placeholder, which fails this.
RUN got="$("${FLOWGATE_ENGINE_CLAUDE_COMMAND}" --version)" || got="exit status $?"; \
    [ "$got" = "${CLAUDE_CODE_VERSION} (Claude Code)" ] \
      || { echo "${FLOWGATE_ENGINE_CLAUDE_COMMAND} --version printed '$got', want ${CLAUDE_CODE_VERSION}" >&2; exit 1; }; \
    got="$("${FLOWGATE_ENGINE_COMMAND}" --version)" || got="exit status $?"; \
    case "$got" in \
      "v${CLAUDE_FLOW_VERSION}"|"${CLAUDE_FLOW_VERSION}") ;; \
      *) echo "${FLOWGATE_ENGINE_COMMAND} --version printed '$got', want ${CLAUDE_FLOW_VERSION}" >&2; exit 1 ;; \
    esac
WORKDIR /data
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/flowgate", "healthcheck", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/flowgate"]
CMD ["serve", "--config", "/etc/flowgate/flowgate.yaml"]
