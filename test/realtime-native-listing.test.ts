/** Native tool listing and session readiness, driven directly over a scripted tool catalog. */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { McpServerConfig } from "../src/config/model.js";
import { NativeListing } from "../src/realtime/native-listing.js";
import { ReadyGate } from "../src/realtime/session-ready.js";
import type { ToolCatalog } from "../src/realtime/tool-catalog.js";
import { UpstreamUnavailableError } from "../src/realtime/upstream-error.js";
import { freshMetrics, makeConfig, metricValue, silentLogger } from "./fake-realtime/helpers.js";

const servers = makeConfig("wss://upstream.invalid/v1/realtime", {
  mcp_servers: [
    { name: "ha", mode: "native", server_url: "https://ha.example/mcp" },
    { name: "web", mode: "native", server_url: "https://web.example/mcp" },
  ],
}).mcp_servers;

function rig(moved: boolean | Error = true) {
  const failovers: string[] = [];
  let offered: readonly McpServerConfig[] = servers;
  const catalog: ToolCatalog = {
    nativeServers: () => offered,
    functionTools: () => [],
    policyOf: () => "never",
    failover: (server) => {
      failovers.push(server);
      return moved instanceof Error ? Promise.reject(moved) : Promise.resolve(moved);
    },
  };
  const st = { toolsChanged: 0, progressed: 0, closed: false };
  const metrics = freshMetrics();
  const listing = new NativeListing({
    catalog,
    metrics,
    log: silentLogger(),
    closed: () => st.closed,
    toolsChanged: () => void st.toolsChanged++,
    progressed: () => void st.progressed++,
  });
  listing.offer(listing.servers());
  return { listing, failovers, st, metrics, setOffered: (s: readonly McpServerConfig[]) => (offered = s) };
}

const settle = () => new Promise((r) => setImmediate(r));

afterEach(() => void vi.useRealTimers());

describe("NativeListing", () => {
  it("pending until listing starts; settled once every server listed, whichever event came first", async () => {
    const { listing, st, metrics } = rig();
    expect(Object.fromEntries(listing.states())).toEqual({ ha: "pending", web: "pending" });
    listing.onItem("item_ha", "ha");
    listing.onItem("item_ha", "ha"); // reported again by another item event
    listing.onListed("item_web", true); // outcome before its item
    expect(Object.fromEntries(listing.states())).toEqual({ ha: "listing", web: "pending" });
    expect(listing.settled).toBe(false);
    listing.onItem("item_web", "web");
    listing.onListed("item_ha", true);
    expect(Object.fromEntries(listing.states())).toEqual({ ha: "listed", web: "listed" });
    expect(listing.settled).toBe(true);
    expect(st.progressed).toBe(2);
    expect(await metricValue(metrics, "openvoice_mcp_server_up", { server: "ha", mode: "native" })).toBe(1);
  });

  it("a server that failed to list moves to client mode: not offered natively again, tools re-sent", async () => {
    const { listing, failovers, st } = rig(true);
    listing.onItem("item_ha", "ha");
    listing.onListed("item_ha", false);
    expect(listing.states().get("ha")).toBe("failed");
    await settle();
    expect(failovers).toEqual(["ha"]);
    expect(listing.states().get("ha")).toBe("failed_over");
    expect([...listing.failedOver]).toEqual(["ha"]);
    expect(listing.servers().map((s) => s.name)).toEqual(["web"]);
    expect(st.toolsChanged).toBe(1);
    // Offering the rest again keeps the failed-over server's state.
    listing.offer(listing.servers());
    expect(listing.states().get("ha")).toBe("failed_over");
  });

  it("a failover without a route, or that throws, leaves the server failed", async () => {
    for (const outcome of [false, new Error("no route")]) {
      const { listing, st } = rig(outcome);
      listing.onItem("item_ha", "ha");
      listing.onListed("item_ha", false);
      await settle();
      expect(listing.states().get("ha")).toBe("failed");
      expect(st.toolsChanged).toBe(0);
      expect(st.progressed).toBe(1);
    }
  });

  it("timeOut fails every server still pending or listing, and leaves listed ones", async () => {
    const { listing, failovers } = rig(false);
    listing.onItem("item_ha", "ha");
    listing.onListed("item_ha", true);
    listing.timeOut();
    expect(Object.fromEntries(listing.states())).toEqual({ ha: "listed", web: "failed" });
    await settle();
    expect(failovers).toEqual(["web"]);
  });

  it("offer() forgets servers no longer offered and adds new ones as pending", () => {
    const { listing, setOffered } = rig();
    setOffered(servers.slice(1));
    listing.offer(listing.servers());
    expect(Object.fromEntries(listing.states())).toEqual({ web: "pending" });
  });
});

describe("ReadyGate", () => {
  function gate(settled = () => true) {
    const st = { timedOut: 0 };
    const g = new ReadyGate({
      readyTimeoutMs: 1000,
      handshakeTimeoutMs: 300,
      nativeSettled: settled,
      nativeTimedOut: () => void st.timedOut++,
    });
    return { g, st };
  }

  it("resolves on session.updated once native servers settled", async () => {
    let settled = false;
    const { g } = gate(() => settled);
    const ready = g.wait();
    g.answered();
    g.updated();
    expect(g.waiting).toBe(true);
    settled = true;
    g.check();
    await ready;
    expect(g.waiting).toBe(false);
  });

  it("refuses in words: silence past the handshake bound, no session.updated past the ready bound", async () => {
    vi.useFakeTimers();
    const silent = gate().g.wait();
    const silentRefusal = expect(silent).rejects.toThrow(/OpenAI did not answer \(nothing within 300 ms/);
    vi.advanceTimersByTime(300);
    await silentRefusal;
    const { g } = gate();
    const unconfirmed = g.wait();
    g.answered();
    const refusal = expect(unconfirmed).rejects.toThrow(/did not confirm the session configuration/);
    vi.advanceTimersByTime(1000);
    await refusal;
  });

  it("past the ready bound after session.updated, it fails the servers not listed instead", async () => {
    vi.useFakeTimers();
    let settled = false;
    const { g, st } = gate(() => settled);
    const ready = g.wait();
    g.answered();
    g.updated();
    vi.advanceTimersByTime(1000);
    expect(st.timedOut).toBe(1);
    settled = true;
    g.check();
    await ready;
  });

  it("an early refusal rejects the wait; fail() ends it", async () => {
    const early = new UpstreamUnavailableError("config", "rejected");
    await expect(gate().g.wait(early)).rejects.toBe(early);
    const { g } = gate(() => false);
    const p = g.wait();
    g.fail(new Error("closed"));
    await expect(p).rejects.toThrow("closed");
    expect(g.waiting).toBe(false);
  });
});
