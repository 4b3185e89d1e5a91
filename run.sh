#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# Starts OpenVoice MCP. A YAML file in the add-on's config folder (/config/openvoice-mcp.yaml)
# takes precedence over the options set in the UI (/data/options.json). Node is the image's (24 or
# newer, checked when the image is built); the service keeps its compile cache in /data/cache.
set -euo pipefail

readonly YAML_CONFIG=/config/openvoice-mcp.yaml

if bashio::fs.file_exists "${YAML_CONFIG}"; then
  bashio::log.info "Using ${YAML_CONFIG}; the options from the add-on UI are not used"
  exec node /app/dist/main.js --config "${YAML_CONFIG}"
fi

exec node /app/dist/main.js --options /data/options.json
