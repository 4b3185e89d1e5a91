ARG BUILD_FROM=ghcr.io/home-assistant/base:3.24

# Build stage: check the types, bundle src/ into dist/ (build.ts), then keep only the runtime
# dependencies. `--ignore-scripts` also keeps the `node` dev dependency from fetching a Node binary:
# the build runs Alpine's.
FROM ${BUILD_FROM} AS build
RUN apk add --no-cache nodejs npm
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json build.ts ./
COPY scripts/eager-wrappers.ts ./scripts/
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Runtime: Node from Alpine, s6-overlay from the base image (init: false). npm (npx), uv (uvx) and
# python3 run the stdio MCP servers that DOCS.md shows (`command: npx …`, `command: uvx …`).
FROM ${BUILD_FROM}
RUN apk add --no-cache nodejs npm python3 uv
# The service needs Node 24 or newer (package.json `engines`). Alpine 3.23 is the first release
# whose `nodejs` is 24 (24.11 when it came out); an older base image fails the build here.
RUN node -e 'const major = Number(process.versions.node.split(".")[0]); if (major < 24) { console.error("Node " + process.version + " is older than 24: build from a base image on Alpine 3.23 or newer"); process.exit(1); }'

# Packages that npx and uvx fetch are kept under /data, which survives restarts and updates, so a
# restart does not download them again. uvx prefers Alpine's python3; a Python it must download
# goes under /data as well.
ENV npm_config_cache=/data/cache/npm \
    npm_config_update_notifier=false \
    UV_CACHE_DIR=/data/cache/uv \
    UV_TOOL_DIR=/data/cache/uv-tools \
    UV_PYTHON_INSTALL_DIR=/data/cache/uv-python \
    UV_PYTHON_PREFERENCE=system

WORKDIR /app
COPY --from=build /build/package.json ./
COPY --from=build /build/node_modules ./node_modules
# dist/ holds the bundled service and the ingress UI files (dist/ui); package.json gives the version.
COPY --from=build /build/dist ./dist
COPY run.sh /run.sh
RUN chmod a+x /run.sh
# A young generation of 2 MiB semi-spaces. Node 24 sizes it from the heap limit (64 MiB semi-spaces
# on a 24 GiB machine): the service allocates little per second, and every MiB counts on a Raspberry
# Pi. It also keeps the pauses short: once the young generation is larger than the old generation's
# headroom (about 20 MiB here), V8 follows every scavenge with a full mark-compact (~15 ms of main
# thread; bench/profile.md). The benchmarks run every process they measure with these options
# (bench/node-options.ts).
ENV NODE_OPTIONS="--max-semi-space-size=2"

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:8765/healthz || exit 1

# The Supervisor and the builder pass BUILD_ARCH and BUILD_VERSION.
ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=0.4.4
LABEL io.hass.type="addon" \
      io.hass.name="OpenVoice MCP" \
      io.hass.description="Talk to your home through Assist satellites, with the OpenAI Realtime API as the voice and tools from MCP servers" \
      io.hass.url="https://github.com/your-github-user/openvoice-mcp" \
      io.hass.arch="${BUILD_ARCH}" \
      io.hass.version="${BUILD_VERSION}"

CMD ["/run.sh"]
