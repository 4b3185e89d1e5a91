/**
 * Spend survives a crash: the real process (`node dist/main.js`, built by `npm test`) talks to the fake
 * upstream through a protocol v1 satellite; what `/api/cost` showed is still there after SIGKILL and a
 * restart on the same data folder.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { parsePorts, waitFor } from "./reliability/harness.js";
import { TestSatellite, tonePcm } from "./satellite-helpers.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const mainJs = join(root, "dist", "main.js");

interface Cost {
  spent_usd: number;
  devices: { device: string; route: string; spent_usd: number }[];
}

beforeAll(() => {
  if (!existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does)");
});

let dir: string | undefined;
let child: ChildProcess | undefined;
let fake: FakeRealtimeServer | undefined;
let sat: TestSatellite | undefined;

afterEach(async () => {
  sat?.close();
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await new Promise((r) => child!.once("exit", r));
  }
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = child = fake = sat = undefined;
});

async function start(config: string): Promise<{ satellite: number; ingress: number }> {
  const portFile = join(dir!, `ports-${Date.now()}.json`);
  child = spawn(process.execPath, [mainJs, "--config", config, "--port-file", portFile], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      OPENVOICE_DATA_DIR: join(dir!, "data"),
      TZ: "UTC",
    },
    stdio: "ignore",
  });
  // The file may be seen half written: read it until it parses.
  return waitFor(() => readFile(portFile, "utf8").then(parsePorts, () => undefined), 15_000, "the port file");
}

/** Today's spend as `/api/cost` shows it; undefined while the service does not answer. */
const cost = (ingress: number): Promise<Cost | undefined> =>
  fetch(`http://127.0.0.1:${ingress}/api/cost`).then(
    async (res) => (await res.json()) as Cost,
    () => undefined,
  );

describe("spend and a crash", () => {
  it("what /api/cost showed survives SIGKILL and a restart", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-cost-"));
    fake = await startFakeRealtime({ apiKey: "sk-cost-test" });
    const config = join(dir, "openvoice.yaml");
    await writeFile(
      config,
      [
        "openai:",
        "  api_key: sk-cost-test",
        `  base_url: ${fake.url}`,
        "  pool_size: 0",
        "listen: {host: 127.0.0.1, satellite_port: 0, ingress_port: 0}",
        "wyoming: {enabled: false}",
        "log_level: warning",
        "",
      ].join("\n"),
    );
    let ports = await start(config);
    const info = (await (await fetch(`http://127.0.0.1:${ports.ingress}/api/satellite`)).json()) as {
      token: string;
    };
    sat = await TestSatellite.connect(`ws://127.0.0.1:${ports.satellite}/api/v1/satellite`);
    await sat.hello({ token: info.token, turn: "client" });
    sat.send({ type: "turn.start" });
    sat.sendAudio(tonePcm(600, 16000));
    sat.send({ type: "turn.end" });
    await sat.waitJson("response.end", () => true, 10_000);
    const shown = await waitFor(
      async () => {
        const c = await cost(ports.ingress);
        return c && c.spent_usd > 0 && c.devices.length > 0 ? c : undefined;
      },
      10_000,
      "the answer's cost",
    );
    expect(shown.devices[0]).toMatchObject({ device: "kitchen", route: "v1" });

    child!.kill("SIGKILL");
    await new Promise((r) => child!.once("exit", r));
    sat.close();
    ports = await start(config);
    const after = await waitFor(
      async () => {
        const c = await cost(ports.ingress);
        return c && c.devices.length > 0 ? c : undefined;
      },
      10_000,
      "the ledger read back",
    );
    expect(after.spent_usd).toBe(shown.spent_usd);
    expect(after.devices).toEqual(shown.devices);
  });
});
