/**
 * Home Assistant's time zone through the Supervisor's proxy (`GET /core/api/config`), served here by a
 * loopback stand-in for the Supervisor; `TZ` outside an add-on.
 */
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { homeAssistantTimeZone, isTimeZone, localTimeZone } from "../src/ha/time-zone.js";
import { silentLogger } from "./fake-realtime/helpers.js";

let server: Server | undefined;
afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

async function supervisor(answer: (auth: string | undefined) => [number, unknown]): Promise<string> {
  server = createServer((req, res) => {
    if (req.url !== "/core/api/config") return void res.writeHead(404).end();
    const [status, body] = answer(req.headers.authorization);
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe("Home Assistant's time zone", () => {
  it("comes from the Supervisor with the add-on's token", async () => {
    const url = await supervisor((auth) =>
      auth === "Bearer sv-token" ? [200, { time_zone: "Europe/Berlin", version: "2026.12.0" }] : [401, {}],
    );
    const env = { SUPERVISOR_TOKEN: "sv-token", OPENVOICE_SUPERVISOR_URL: url };
    expect(await homeAssistantTimeZone(env, silentLogger())).toBe("Europe/Berlin");
    expect(
      await homeAssistantTimeZone({ ...env, SUPERVISOR_TOKEN: "wrong" }, silentLogger()),
    ).toBeUndefined();
  });

  it("is not asked for outside an add-on, and an answer without a usable zone is ignored", async () => {
    expect(await homeAssistantTimeZone({}, silentLogger())).toBeUndefined();
    const url = await supervisor(() => [200, { time_zone: "Mars/Olympus_Mons" }]);
    expect(
      await homeAssistantTimeZone({ SUPERVISOR_TOKEN: "t", OPENVOICE_SUPERVISOR_URL: url }, silentLogger()),
    ).toBeUndefined();
  });

  it("falls back to TZ, then UTC", () => {
    expect(localTimeZone({ TZ: "America/New_York" })).toBe("America/New_York");
    expect(localTimeZone({ TZ: "nowhere" })).toBe("UTC");
    expect(localTimeZone({})).toBe("UTC");
  });

  it("knows canonical zones, aliases and UTC, and nothing else", () => {
    for (const zone of ["UTC", "Europe/Berlin", "America/New_York", "US/Eastern", "Etc/UTC", "Europe/Kyiv"])
      expect(isTimeZone(zone), zone).toBe(true);
    for (const bad of ["nowhere", "Mars/Olympus_Mons", ""]) expect(isTimeZone(bad), bad).toBe(false);
  });
});
