/**
 * One session of the SDK client with a server, below the connection's state machine: every page of
 * `tools/list`, a close that is bounded and leaves no process behind, and what its errors say.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type {
  JsonSchemaType,
  JsonSchemaValidator,
  jsonSchemaValidator,
} from "@modelcontextprotocol/sdk/validation";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { killSurvivors, processTree, type ProcessRef } from "./process-tree.js";
import type { ListedTool } from "./registry.js";
import type { OpenedTransport } from "./transport.js";

/** Pages of `tools/list` read at most (a server whose cursor never ends is cut off). */
const MAX_TOOL_PAGES = 100;
/** Time given to a graceful close (stdin end → SIGTERM → SIGKILL in the SDK) before survivors are killed. */
const CLOSE_GRACE_MS = 3500;

/**
 * The SDK's own output-schema validation (Ajv), built when a listed tool first has an output schema
 * instead of with every client: a client is made for every connection attempt, reconnects included,
 * and building Ajv with its formats costs about 5 ms of CPU each time, most often for nothing.
 */
export class LazyOutputValidator implements jsonSchemaValidator {
  #ajv: AjvJsonSchemaValidator | undefined;

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    return (this.#ajv ??= new AjvJsonSchemaValidator()).getValidator<T>(schema);
  }
}

/** Reads every page of `tools/list`; each page is bounded by `timeoutMs`. */
export async function listAllTools(client: Client, timeoutMs: number): Promise<ListedTool[]> {
  const tools: ListedTool[] = [];
  const cursors = new Set<string>();
  let cursor: string | undefined;
  for (let page = 0; page < MAX_TOOL_PAGES; page++) {
    const result = await client.listTools(cursor !== undefined ? { cursor } : undefined, {
      timeout: timeoutMs,
    });
    tools.push(...result.tools);
    cursor = result.nextCursor;
    if (cursor === undefined || cursors.has(cursor)) break;
    cursors.add(cursor);
  }
  return tools;
}

/**
 * Closes a client and its transport; a stdio child that ignores stdin end and SIGTERM, and any
 * process it started, is killed once the grace time is over. Never rejects.
 */
export async function closeBounded(client: Client, opened: OpenedTransport): Promise<void> {
  const pid = opened.pid();
  const tree: ProcessRef[] = pid !== null ? processTree(pid) : [];
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_GRACE_MS);
  });
  await Promise.race([
    (async () => {
      await Promise.race([opened.terminate(), delay(1000)]);
      await client.close();
    })().catch(() => undefined),
    grace,
  ]);
  clearTimeout(timer);
  killSurvivors(tree);
}

/** The Streamable HTTP transport's error for an HTTP 404: the server does not know our session (any more). */
export function isSessionNotFound(err: unknown): boolean {
  return err instanceof StreamableHTTPError && err.code === 404;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** `MCP error -32602: msg` → `msg` (the prefix may be repeated when it crossed the wire). */
export function stripMcpPrefix(message: string): string {
  return message.replace(/^(?:MCP error -?\d+: )+/, "");
}

/** An error in one line for logs and the status API: without the SDK's prefixes, with its cause. */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    const causeText = cause instanceof Error && cause.message !== err.message ? `: ${cause.message}` : "";
    return `${stripMcpPrefix(err.message)}${causeText}`;
  }
  return String(err);
}
