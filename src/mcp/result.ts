/**
 * Turns an MCP `tools/call` result into the text a Realtime `function_call_output` carries.
 * Pure. Text content is passed through; binary content is summarised (the model cannot use base64).
 */

/** Longest output handed to the model; longer text is cut and marked. */
export const MAX_OUTPUT_CHARS = 32_000;

/** The part of a content block this module reads; unknown block types are summarised by type. */
export interface ContentBlock {
  readonly type: string;
  readonly [key: string]: unknown;
}

export interface ToolResultLike {
  readonly content?: readonly ContentBlock[];
  readonly structuredContent?: unknown;
  readonly isError?: boolean;
  /** Pre-2025 result shape, still accepted by the SDK. */
  readonly toolResult?: unknown;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Approximate decoded size of base64 data. */
function base64Bytes(data: string): number {
  const pad = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((data.length * 3) / 4) - pad);
}

function describeBlock(block: ContentBlock): string {
  switch (block.type) {
    case "text":
      return str(block.text) ?? "";
    case "image":
    case "audio": {
      const data = str(block.data) ?? "";
      const mime = str(block.mimeType) ?? "unknown type";
      return `[${block.type}: ${mime}, ${base64Bytes(data)} bytes]`;
    }
    case "resource_link": {
      const name = str(block.name) ?? str(block.title);
      const uri = str(block.uri) ?? "";
      const desc = str(block.description);
      return `[resource link: ${name ? `${name} ` : ""}<${uri}>${desc ? ` ${desc}` : ""}]`;
    }
    case "resource": {
      const res = (
        typeof block.resource === "object" && block.resource !== null ? block.resource : {}
      ) as Record<string, unknown>;
      const uri = str(res.uri) ?? "";
      const text = str(res.text);
      if (text !== undefined) return `[resource <${uri}>]\n${text}`;
      const blob = str(res.blob);
      const mime = str(res.mimeType) ?? "unknown type";
      return `[resource <${uri}>: ${mime}${blob !== undefined ? `, ${base64Bytes(blob)} bytes` : ""}]`;
    }
    default:
      return `[${block.type} content]`;
  }
}

/** Cuts `text` to `MAX_OUTPUT_CHARS`, saying how much was left out. */
export function capOutput(text: string, max = MAX_OUTPUT_CHARS): string {
  if (text.length <= max) return text;
  const note = `\n[output truncated: ${text.length - max} more characters]`;
  return text.slice(0, Math.max(0, max - note.length)) + note;
}

/**
 * The model-facing text of a result: content blocks joined by newlines (text as is, images, audio
 * and resources as a one-line summary, embedded text resources with their text). With no content,
 * the structured content (or the legacy `toolResult`) as JSON; with nothing at all, a note saying so.
 */
export function resultText(result: ToolResultLike): string {
  const blocks = result.content ?? [];
  let text = blocks.map(describeBlock).join("\n");
  if (text.trim() === "") {
    const structured = result.structuredContent ?? result.toolResult;
    if (structured !== undefined) text = JSON.stringify(structured) ?? "";
  }
  if (text.trim() === "") text = result.isError ? "The tool failed without a message." : "(no output)";
  return capOutput(text);
}
