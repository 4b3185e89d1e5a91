/**
 * Client MCP against a real SDK server over an in-memory linked pair: paging through tool lists
 * (including a server whose cursor never ends) and turning real call results into text.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { LazyOutputValidator, listAllTools } from "../src/mcp/client-session.js";
import { resultText } from "../src/mcp/result.js";
import { createToyServer, PAGE_SIZE } from "./fixtures/mcp/toy-server.js";

const open: { close(): Promise<void> }[] = [];

async function connect(
  server: Server,
  options: ConstructorParameters<typeof Client>[1] = {},
): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: "test", version: "1.0.0" }, { capabilities: {}, ...options });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  open.push(client, server);
  return client;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

describe("listAllTools", () => {
  it("reads every page", async () => {
    const client = await connect(createToyServer());
    const first = await client.listTools();
    expect(first.tools).toHaveLength(PAGE_SIZE);
    expect(first.nextCursor).toBeDefined();
    const all = await listAllTools(client, 5000);
    expect(all.map((t) => t.name)).toEqual([
      "echo",
      "sleep",
      "fail",
      "throw",
      "crash",
      "image",
      "env",
      "pid",
      "grandchild",
      "add_tool",
    ]);
  });

  it("stops when a server repeats a cursor", async () => {
    const server = new Server({ name: "loop", version: "1.0.0" }, { capabilities: { tools: {} } });
    let requests = 0;
    server.setRequestHandler(ListToolsRequestSchema, (req) => {
      requests++;
      const n = req.params?.cursor === undefined ? 0 : 1;
      return {
        tools: [{ name: `t${n}`, inputSchema: { type: "object" as const } }],
        nextCursor: "again",
      };
    });
    const client = await connect(server);
    const all = await listAllTools(client, 5000);
    // First page, then the page behind "again"; "again" a second time ends the listing.
    expect(all.map((t) => t.name)).toEqual(["t0", "t1"]);
    expect(requests).toBe(2);
  });
});

describe("resultText on real results", () => {
  it("summarises an image and inlines an embedded text resource", async () => {
    const client = await connect(createToyServer());
    const result = await client.callTool({ name: "image", arguments: {} });
    expect(resultText(result)).toBe(
      "a dot:\n[image: image/png, 68 bytes]\n[resource <file:///note.txt>]\nhello note",
    );
    const failed = await client.callTool({ name: "fail", arguments: {} });
    expect(failed.isError).toBe(true);
    expect(resultText(failed)).toBe("the thing is broken");
  });
});

describe("LazyOutputValidator", () => {
  /** A server with one tool whose output schema asks for a number `n`; it answers `n` as given. */
  function structuredServer(n: unknown): Server {
    const server = new Server({ name: "structured", version: "1.0.0" }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, () => ({
      tools: [
        {
          name: "count",
          inputSchema: { type: "object" as const },
          outputSchema: {
            type: "object" as const,
            properties: { n: { type: "number" } },
            required: ["n"],
          },
        },
      ],
    }));
    server.setRequestHandler(CallToolRequestSchema, () => ({
      content: [{ type: "text" as const, text: JSON.stringify({ n }) }],
      structuredContent: { n },
    }));
    return server;
  }

  it("validates a tool's structured output as the SDK's own validator does", async () => {
    const client = await connect(structuredServer(3), { jsonSchemaValidator: new LazyOutputValidator() });
    await client.listTools();
    const result = await client.callTool({ name: "count", arguments: {} });
    expect(result.structuredContent).toEqual({ n: 3 });
  });

  it("refuses structured output that breaks the tool's output schema", async () => {
    const client = await connect(structuredServer("three"), {
      jsonSchemaValidator: new LazyOutputValidator(),
    });
    await client.listTools();
    await expect(client.callTool({ name: "count", arguments: {} })).rejects.toThrow(/n must be number/);
  });

  it("answers a validator per schema, each judging its own", () => {
    const v = new LazyOutputValidator();
    const numbers = v.getValidator<{ n: number }>({ type: "object", properties: { n: { type: "number" } } });
    const strings = v.getValidator<{ s: string }>({ type: "object", properties: { s: { type: "string" } } });
    expect(numbers({ n: 1 }).valid).toBe(true);
    expect(numbers({ n: "1" }).valid).toBe(false);
    expect(strings({ s: "x" }).valid).toBe(true);
    expect(strings({ s: 1 }).valid).toBe(false);
  });
});
