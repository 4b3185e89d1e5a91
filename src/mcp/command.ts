/**
 * Whether a stdio MCP server's `command` can be started, found the way the child would be started:
 * a command with a `/` is a path (relative to the server's `cwd`), any other name is looked up on
 * the `PATH` the child gets. Used by `--check-config`, the start-up log and `ServerConnection`, so
 * that a command the image does not have is reported in words instead of `spawn … ENOENT` retries.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import type { McpServerConfig } from "../config/model.js";
import { childEnvironment } from "./env.js";

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The file `command` would run, or `undefined` when there is none. Pure apart from reading the file system. */
export function findCommand(command: string, pathVar: string | undefined, cwd: string): string | undefined {
  if (command.includes("/")) {
    const path = isAbsolute(command) ? command : resolve(cwd, command);
    return isExecutableFile(path) ? path : undefined;
  }
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (dir === "") continue;
    const path = join(resolve(cwd, dir), command);
    if (isExecutableFile(path)) return path;
  }
  return undefined;
}

/** What a person is told about a missing command: where it was looked for, in their terms. */
export function missingCommandMessage(command: string, addon: boolean): string {
  if (addon)
    return `command \`${command}\` not found in the add-on image (it has node, npx, python3 and uvx)`;
  return command.includes("/")
    ? `command \`${command}\` does not exist or is not executable`
    : `command \`${command}\` not found on PATH`;
}

export interface MissingCommand {
  readonly server: string;
  readonly command: string;
  readonly message: string;
}

/**
 * The client stdio servers of `servers` whose command cannot be found, with the message to
 * show. `parentEnv` is the service's environment (the child's `PATH` is derived from it and the
 * server's `env`); `addon` picks the wording.
 */
export function missingCommands(
  servers: readonly McpServerConfig[],
  parentEnv: Readonly<Record<string, string | undefined>>,
  addon: boolean,
  cwd: string = process.cwd(),
): MissingCommand[] {
  const out: MissingCommand[] = [];
  for (const s of servers) {
    if (s.mode !== "client" || s.transport !== "stdio" || s.command === undefined) continue;
    const env = childEnvironment(s.env, parentEnv);
    if (findCommand(s.command, env.PATH, resolve(cwd, s.cwd ?? ".")) === undefined)
      out.push({ server: s.name, command: s.command, message: missingCommandMessage(s.command, addon) });
  }
  return out;
}
