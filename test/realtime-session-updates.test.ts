/** What a session tells the upstream about its configuration, driven directly with a recording `send`. */
import { describe, expect, it } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { McpServerConfig } from "../src/config/model.js";
import type { RoutedTool } from "../src/mcp/types.js";
import { SessionUpdates } from "../src/realtime/session-updates.js";
import { makeConfig, silentLogger, tool } from "./fake-realtime/helpers.js";

type Update = Extract<RealtimeClientEvent, { type: "session.update" }>;
/** The realtime session of a sent update (these updates are never transcription sessions). */
const realtime = (e: RealtimeClientEvent | undefined) => {
  const session = (e as Update).session;
  if (session.type !== "realtime") throw new Error("not a realtime session update");
  return session;
};

const config = makeConfig("wss://upstream.invalid/v1/realtime", {
  mcp_servers: [{ name: "ha", mode: "native", server_url: "https://ha.example/mcp" }],
});

function rig() {
  const sent: RealtimeClientEvent[] = [];
  const offered: string[][] = [];
  let functions: RoutedTool[] = [tool("web", "search")];
  const updates = new SessionUpdates({
    openai: config.openai,
    send: (e) => sent.push(e),
    log: silentLogger(),
    native: {
      servers: () => [...config.mcp_servers],
      offer: (s: readonly McpServerConfig[]) => void offered.push(s.map((x) => x.name)),
    },
    functionTools: () => functions,
    turn: "server_vad",
    createResponse: true,
  });
  return { updates, sent, offered, setFunctions: (f: RoutedTool[]) => (functions = f) };
}

describe("SessionUpdates", () => {
  it("the opening update carries native servers and function tools, with an id to match errors by", () => {
    const { updates, sent, offered } = rig();
    updates.opening();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.event_id).toBe(updates.openingId);
    const tools = realtime(sent[0]).tools ?? [];
    expect(tools.map((t) => t.type).sort()).toEqual(["function", "mcp"]);
    expect(offered).toEqual([["ha"]]);
  });

  it("re-sends tools only when they changed, as a later update whose refusal is forgotten once", () => {
    const { updates, sent, setFunctions } = rig();
    updates.opening();
    updates.refreshTools();
    expect(sent).toHaveLength(1);
    setFunctions([]);
    updates.refreshTools();
    expect(sent).toHaveLength(2);
    const id = sent[1]?.event_id ?? "";
    expect(updates.laterIds.has(id)).toBe(true);
    updates.refused(id);
    expect(updates.laterIds.has(id)).toBe(false);
  });

  it("configure sends only what changed: turn mode, context", () => {
    const { updates, sent } = rig();
    updates.configure({ turn: "server_vad" });
    expect(sent).toEqual([]);
    updates.configure({ turn: "client", context: "User: hi" });
    expect(updates.turn).toBe("client");
    const session = realtime(sent[0]);
    expect(session).toMatchObject({ audio: { input: { turn_detection: null } } });
    expect(session.instructions).toContain("User: hi");
  });

  it("a speaker session turns detection off and sets its voice; a language sets the transcription's", () => {
    const { updates, sent } = rig();
    updates.speaker("cedar");
    updates.transcriptionLanguage("de");
    expect(updates.turn).toBe("client");
    expect(sent).toEqual([
      {
        type: "session.update",
        session: { type: "realtime", audio: { input: { turn_detection: null }, output: { voice: "cedar" } } },
      },
      {
        type: "session.update",
        session: {
          type: "realtime",
          audio: { input: { transcription: { model: config.openai.transcription_model, language: "de" } } },
        },
      },
    ]);
  });
});
