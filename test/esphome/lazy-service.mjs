// Builds the whole service (createApp + wireService) with the ESPHome part enabled and one listed device,
// and reports which of the ESPHome modules (the device manager, the turn, the API client) were loaded
// before the service listened, and after. Used by test/esphome-devices.test.ts.
import { mkdtemp, rm } from "node:fs/promises";
import { registerHooks } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { URL } from "node:url";

const loaded = new Set();
registerHooks({
  resolve(spec, ctx, next) {
    const r = next(spec, ctx);
    loaded.add(r.url);
    return r;
  },
});
const HEAVY = {
  runtime: /\/src\/esphome\/runtime\.ts$/,
  devices: /\/src\/esphome\/devices\.ts$/,
  turn: /\/src\/esphome\/turn\.ts$/,
  "esphome-client": /\/esphome-client\//,
};
const heavy = () =>
  Object.entries(HEAVY)
    .filter(([, re]) => [...loaded].some((u) => re.test(u)))
    .map(([name]) => name);

const src = (p) => new URL(`../../src/${p}`, import.meta.url).href;
const { createApp } = await import(src("app.ts"));
const { wireService } = await import(src("service.ts"));
const { ConfigSchema } = await import(src("config/model.ts"));
const { pino } = await import("pino");

const dataDir = await mkdtemp(join(tmpdir(), "openvoice-lazy-"));
const app = await createApp({
  config: ConfigSchema.parse({
    openai: { api_key: "sk-test", base_url: "ws://127.0.0.1:1", pool_size: 0 },
    listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
    wyoming: { enabled: false },
    esphome: { discover: false, devices: [{ host: "127.0.0.1", port: 1 }] },
  }),
  env: {},
  logger: pino({ level: "silent" }),
  dataDir,
});
const service = await wireService(app, { esphome: { backoffMs: [60_000] } });
const before = heavy();
await app.listen();
await service.esphome.started;
const after = heavy();
await app.close();
await rm(dataDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify({ before, after }));
