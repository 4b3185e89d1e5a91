/** The Home Assistant WebSocket client against the fake Home Assistant, over real WebSockets on loopback. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  HaWebSocketClient,
  HaWebSocketError,
  haWebSocketTarget,
  type HaWebSocketTarget,
} from "../../src/esphome/ha-websocket.js";
import { RELOAD_AFTER_UPDATE_DELAY, startFakeHa, type FakeHa } from "./fake-ha.js";

const TOKEN = "long-lived-token-for-tests";
const SATELLITE = "assist_satellite.home_assistant_voice_0a1b2c_assist_satellite";

describe("Home Assistant WebSocket API client", () => {
  let ha: FakeHa;
  let target: HaWebSocketTarget;
  beforeEach(async () => {
    ha = await startFakeHa({
      token: TOKEN,
      entities: { [SATELLITE]: { disabled_by: null, platform: "esphome" } },
    });
    const t = haWebSocketTarget({ url: ha.url, token: TOKEN }, {});
    if ("reason" in t) throw new Error(t.reason);
    target = t;
  });
  afterEach(async () => ha.close());

  const failure = async (p: Promise<unknown>): Promise<HaWebSocketError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof HaWebSocketError) return e;
      throw e;
    }
    throw new Error("expected a HaWebSocketError");
  };

  it("targets the Supervisor proxy as an add-on, else home_assistant.url, else says why", () => {
    expect(
      haWebSocketTarget({ url: "https://ha.example:8123/", token: "t" }, { SUPERVISOR_TOKEN: "sup" }),
    ).toEqual({ url: "ws://supervisor/core/websocket", token: "sup", via: "supervisor" });
    expect(haWebSocketTarget({ url: "https://ha.example:8123/", token: "t" }, {})).toEqual({
      url: "wss://ha.example:8123/api/websocket",
      token: "t",
      via: "home_assistant.url",
    });
    expect(haWebSocketTarget({ url: "http://ha:8123" }, {})).toEqual({
      reason: expect.stringMatching(/^Home Assistant's WebSocket API is not configured/),
    });
  });

  it("disables the entity (take over) and enables it again (give back) with the reload delay", async () => {
    const client = new HaWebSocketClient(target);
    expect(await client.setEntityDisabled(SATELLITE, true)).toEqual({});
    expect(ha.entities.get(SATELLITE)!.disabled_by).toBe("user");
    expect(await client.setEntityDisabled(SATELLITE, false)).toEqual({
      reloadDelayS: RELOAD_AFTER_UPDATE_DELAY,
    });
    expect(ha.updates).toEqual([
      { entity_id: SATELLITE, disabled_by: "user" },
      { entity_id: SATELLITE, disabled_by: null },
    ]);
    expect(ha.connections()).toBe(2);
  });

  it("works through the Supervisor's path with the Supervisor token", async () => {
    const t = haWebSocketTarget({}, { SUPERVISOR_TOKEN: TOKEN, OPENVOICE_SUPERVISOR_URL: ha.url });
    if ("reason" in t) throw new Error(t.reason);
    expect(t.url).toBe(`${ha.url.replace("http", "ws")}/core/websocket`);
    await new HaWebSocketClient(t).setEntityDisabled(SATELLITE, true);
    expect(ha.updates).toHaveLength(1);
  });

  it("says in words when the token is wrong, the entity unknown, or Home Assistant refuses", async () => {
    const bad = await failure(
      new HaWebSocketClient({ ...target, token: "wrong" }).setEntityDisabled(SATELLITE, true),
    );
    expect(bad.code).toBe("auth_invalid");
    expect(bad.message).toBe(`${target.url} refused the access token`);
    expect(ha.authFailures()).toBe(1);

    const client = new HaWebSocketClient(target);
    const unknown = await failure(client.setEntityDisabled("assist_satellite.nope", true));
    expect(unknown).toMatchObject({ code: "command_failed", haCode: "not_found" });
    expect(unknown.message).toBe("Home Assistant refused config/entity_registry/update: Entity not found");

    ha.refuseNext("unauthorized", "Unauthorized");
    const refused = await failure(client.setEntityDisabled(SATELLITE, true));
    expect(refused).toMatchObject({ code: "command_failed", haCode: "unauthorized" });
    expect(ha.updates).toEqual([]);
  });

  it("times out when Home Assistant never answers, and reports an address nobody listens on", async () => {
    ha.silent = true;
    const slow = await failure(
      new HaWebSocketClient(target, { timeoutMs: 300 }).setEntityDisabled(SATELLITE, true),
    );
    expect(slow.code).toBe("timeout");
    expect(slow.message).toMatch(/did not answer within 300 ms$/);

    const url = ha.url;
    await ha.close();
    const gone = await failure(
      new HaWebSocketClient({ ...target, url: `${url.replace("http", "ws")}/api/websocket` }).command({
        type: "ping",
      }),
    );
    expect(gone.code).toBe("unreachable");
    expect(gone.message).toMatch(/\(ECONNREFUSED\)$/);
    ha = await startFakeHa({ token: TOKEN }); // afterEach closes it
  });
});
