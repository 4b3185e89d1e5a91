/**
 * The command line:
 *
 *   openvoice-mcp [--config FILE.yaml | --options FILE.json] [--check-config] [--port-file FILE]
 *                 [--log-format line|json]
 *
 * Configuration source, first match wins: `--config`, `--options`, `OPENVOICE_CONFIG` (YAML),
 * `/data/options.json` when running as an add-on (`SUPERVISOR_TOKEN` set).
 *
 * Exit codes: 0 clean exit (or `--check-config` passed); 1 runtime failure or unclean shutdown;
 * 2 invalid configuration or usage. Once the logger exists, every exit is preceded by a "stopped" line.
 */
import { renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createApp, isAddon, type App, type Env } from "./app.js";
import type { CompileCacheResult } from "./compile-cache.js";
import { loadConfig, type ConfigSource } from "./config/load.js";
import { renderEffectiveConfig } from "./config/mask.js";
import { formatProblem } from "./config/problems.js";
import { missingCommands } from "./mcp/command.js";
import { createLogger, type LogFormat } from "./log.js";
import { wireService } from "./service.js";

export const ADDON_OPTIONS_PATH = "/data/options.json";

export const USAGE = `OpenVoice MCP: talk to your home through voice satellites, with the OpenAI Realtime API
as the voice and tools from MCP servers (Home Assistant's, and any other).

usage: openvoice-mcp --config FILE.yaml [--check-config]
       openvoice-mcp --options FILE.json [--check-config]

Where the settings come from (first match wins):
  --config FILE.yaml   your settings in YAML; \${NAME} is replaced by the environment variable NAME,
                       so secrets can stay out of the file (also: OPENVOICE_CONFIG=FILE.yaml)
  --options FILE.json  the options you set on the add-on's Configuration page, as Home Assistant
                       saves them (used by default inside the add-on: /data/options.json)

Other options:
  --check-config       check the settings and stop: prints what would be used (secrets hidden)
                       and exits 0, or lists each mistake as "option: what is wrong" and exits 2;
                       also warns about an MCP server command that is not installed
  --port-file FILE     once it is listening, write the ports to FILE as
                       {"satellite":PORT,"ingress":PORT,"wyoming":PORT} (handy with port 0)
  --log-format FMT     line (easy to read, the default) or json (one JSON object per line)
  --help               show this text

Satellites connect to ws://HOST:8765/api/v1/satellite; the admin page is the add-on's panel in
Home Assistant (outside an add-on: http://127.0.0.1:8099/). Documentation: DOCS.md.
`;

export interface CliOptions {
  readonly source: ConfigSource;
  readonly checkConfig: boolean;
  readonly portFile?: string;
  readonly logFormat: LogFormat;
}

export type CliParse =
  { readonly ok: true; readonly options: CliOptions } | { readonly ok: false; readonly error: string };

/** Parses the arguments (without `node` and the script) against the environment. */
export function parseCli(argv: readonly string[], env: Env): CliParse {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string" },
        options: { type: "string" },
        "check-config": { type: "boolean", default: false },
        "port-file": { type: "string" },
        "log-format": { type: "string" },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
  if (values.help) return { ok: false, error: "" };
  if (values.config !== undefined && values.options !== undefined)
    return { ok: false, error: "--config and --options exclude each other" };
  const logFormat = values["log-format"] ?? "line";
  if (logFormat !== "line" && logFormat !== "json")
    return { ok: false, error: "--log-format must be line or json" };

  let source: ConfigSource;
  if (values.config !== undefined) source = { form: "yaml", path: values.config };
  else if (values.options !== undefined) source = { form: "options", path: values.options };
  else if (env.OPENVOICE_CONFIG) source = { form: "yaml", path: env.OPENVOICE_CONFIG };
  else if (isAddon(env)) source = { form: "options", path: ADDON_OPTIONS_PATH };
  else return { ok: false, error: "no configuration: pass --config FILE.yaml or set OPENVOICE_CONFIG" };

  const portFile = values["port-file"];
  return {
    ok: true,
    options: { source, checkConfig: values["check-config"], logFormat, ...(portFile ? { portFile } : {}) },
  };
}

const writeErr = (line: string): void => void process.stderr.write(`${line}\n`);

/** Runs the service (or the config check); resolves with the exit code once it should exit. */
export async function main(argv: readonly string[], env: Env, notes: StartupNotes = {}): Promise<number> {
  const cli = parseCli(argv, env);
  if (!cli.ok) {
    if (cli.error === "") {
      process.stdout.write(USAGE);
      return 0;
    }
    writeErr(`openvoice-mcp: ${cli.error}`);
    process.stderr.write(USAGE);
    return 2;
  }
  const { source, checkConfig, portFile, logFormat } = cli.options;
  const loaded = await loadConfig(source, env);
  if (checkConfig || !loaded.ok) for (const w of loaded.warnings) writeErr(`warning: ${formatProblem(w)}`);
  if (!loaded.ok) {
    for (const p of loaded.problems) writeErr(formatProblem(p));
    writeErr(`openvoice-mcp: ${loaded.problems.length} configuration problem(s) in ${source.path}`);
    return 2;
  }
  const notInstalled = missingCommands(loaded.config.mcp_servers, env, isAddon(env)).map(
    (m) => `mcp_servers.${m.server}.command: ${m.message}`,
  );
  if (checkConfig) {
    for (const line of notInstalled) writeErr(`warning: ${line}`);
    process.stdout.write(renderEffectiveConfig(loaded.config));
    return 0;
  }

  const logger = createLogger({ level: loaded.config.log_level, format: logFormat });
  logger.info({ source: source.path, form: source.form }, "configuration loaded");
  if (notes.compileCache) logger.debug(notes.compileCache, "module compile cache");
  for (const w of loaded.warnings) logger.warn(formatProblem(w));
  for (const line of notInstalled) logger.warn(line);
  let app: App | undefined;
  try {
    app = await createApp({ config: loaded.config, env, logger });
    await wireService(app);
  } catch (e) {
    logger.fatal({ err: e }, "start-up failed");
    const report = await app?.close();
    logger.info({ clean: false, failed: report?.failed ?? [], timedOut: report?.timedOut ?? [] }, "stopped");
    return 1;
  }
  const running = app;

  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (why: string, code: number): void => {
      if (stopping) {
        logger.warn({ why }, "second stop request: exiting now");
        logger.info({ clean: false }, "stopped");
        resolveExit(1);
        return;
      }
      stopping = true;
      logger.info({ why }, "shutting down");
      void running.close().then((report) => {
        logger.info({ clean: report.clean, failed: report.failed, timedOut: report.timedOut }, "stopped");
        resolveExit(report.clean ? code : 1);
      });
    };
    process.on("SIGTERM", () => stop("SIGTERM", 0));
    process.on("SIGINT", () => stop("SIGINT", 0));
    process.on("uncaughtException", (err) => {
      logger.fatal({ err }, "uncaught exception");
      stop("uncaught exception", 1);
    });
    process.on("unhandledRejection", (err) => {
      logger.fatal({ err }, "unhandled rejection");
      stop("unhandled rejection", 1);
    });

    running
      .listen()
      .then((ports) => {
        if (portFile !== undefined) {
          // Written beside and renamed into place: a reader never sees a partly written file. Written
          // synchronously, before the start-up work that follows listening takes its turns: a file
          // written in steps would wait for each of them.
          const partial = `${portFile}.${process.pid}.tmp`;
          writeFileSync(
            partial,
            // Extra listeners (e.g. `wyoming`) by name beside the two fixed ports.
            JSON.stringify({ ...ports.extra, satellite: ports.satellitePort, ingress: ports.ingressPort }),
          );
          renameSync(partial, portFile);
        }
        running.setReady(true);
        logger.info({ dataDir: running.dataDir, addon: running.addon }, "ready");
      })
      .catch((err: unknown) => {
        logger.fatal({ err }, "cannot listen");
        stop("listen failed", 1);
      });
  });
}

/** What the process entry did before the service loaded, for the log. */
export interface StartupNotes {
  readonly compileCache?: CompileCacheResult;
}

/** Runs `main` on this process's arguments and environment, and exits with its code. */
export function runProcess(notes: StartupNotes = {}): void {
  main(process.argv.slice(2), process.env, notes).then(
    (code) => process.exit(code),
    (err: unknown) => {
      writeErr(`openvoice-mcp: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      writeErr("openvoice-mcp: stopped");
      process.exit(1);
    },
  );
}
