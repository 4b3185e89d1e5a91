/**
 * The environment of a stdio MCP server's child process: a small allow-list of the service's own
 * variables plus what the server's config sets. The service's secrets are never inherited.
 */

/**
 * Inherited when set. The SDK's stdio transport adds its own safe default on top
 * (`HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER`), so those are listed here too.
 */
export const INHERITED_ENV = [
  "HOME",
  "LOGNAME",
  "PATH",
  "SHELL",
  "TERM",
  "USER",
  "LANG",
  "LANGUAGE",
  "LC_ALL",
  "LC_CTYPE",
  "TZ",
  "TMPDIR",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  // Where npx and uvx keep what they download (the add-on image points them under /data).
  "npm_config_cache",
  "npm_config_update_notifier",
  "UV_CACHE_DIR",
  "UV_TOOL_DIR",
  "UV_PYTHON_INSTALL_DIR",
  "UV_PYTHON_PREFERENCE",
] as const;

/**
 * Never inherited, whatever the allow-list says: the OpenAI key and the Supervisor's token (both
 * names it has had). A server that needs one gets it only through its own `env` config.
 */
export const SECRET_ENV = ["OPENAI_API_KEY", "SUPERVISOR_TOKEN", "HASSIO_TOKEN"] as const;

const SECRET = new Set<string>(SECRET_ENV);

/**
 * The child's environment: allow-listed variables of `parent` (values that look like shell
 * functions, `() {…`, are skipped, as the SDK does) overlaid with `configured`. Configured values
 * win and are passed as given, including secrets the user chose to hand to that server.
 */
export function childEnvironment(
  configured: Readonly<Record<string, string>>,
  parent: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of INHERITED_ENV) {
    const value = parent[key];
    if (value === undefined || value.startsWith("()") || SECRET.has(key)) continue;
    env[key] = value;
  }
  return { ...env, ...configured };
}
