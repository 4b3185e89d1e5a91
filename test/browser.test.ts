/**
 * The ingress UI in a real headless Chromium (Debian's `chromium-headless-shell`, or the one the
 * `@sparticuz/chromium` package carries when the system has none: test/helpers/chromium.ts; driven
 * by playwright-core), opened through a prefix-stripping proxy that plays the Supervisor's ingress:
 * toggle a server, answer a pending approval, and talk on the talk page with a fixture WAV as the
 * microphone — through the real satellite route and realtime engine to the fake Realtime server,
 * which hears the audio and answers with speech the page plays.
 *
 * Screenshots go to `test-artifacts/`.
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { chromium, type Browser, type Page } from "playwright-core";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalQueue, type ApprovalDecision } from "../src/approvals/queue.js";
import { parseWav } from "../src/audio/wav.js";
import { ConfigSchema } from "../src/config/model.js";
import { CostLedger } from "../src/cost/ledger.js";
import { CostMeter } from "../src/cost/meter.js";
import { PriceTable } from "../src/cost/prices.js";
import { ingressPlugin, type StatusSnapshot } from "../src/http/ingress.js";
import { createIngressServer } from "../src/http/server.js";
import type { ToolProvider } from "../src/mcp/types.js";
import { createMetrics } from "../src/metrics.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import { SatelliteRegistry, satelliteRoute } from "../src/satellite/route.js";
import { RuntimeState, STATE_FILE } from "../src/state/runtime-state.js";
import { PersistentServerAdmin } from "../src/state/server-admin.js";
import { WyomingActivity } from "../src/wyoming/activity.js";
import {
  rms,
  startFakeRealtime,
  type FakeConnection,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";
import { startIngressProxy, type IngressProxy } from "./fixtures/supervisor/ingress-proxy.js";
import { CHROMIUM_ARGS, findChromium, talkPageArgs, type FoundChromium } from "./helpers/chromium.js";
import { startHarness, type Harness } from "./esphome-helpers.js";

const AUDIO = (name: string) => fileURLToPath(new URL(`./fixtures/audio/${name}`, import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));
const SATELLITE_TOKEN = "shared-satellite-token-0123456789";
const TALK_TOKEN = "ingress-talk-token-abcdefghijklmnop";

/**
 * One client tool, `set_light` of a server "home" that no policy lets through (so a person is
 * asked), answered in memory: this suite is about the UI, not client MCP.
 */
const lightTool: ToolProvider = {
  tools: () => [
    {
      name: "set_light",
      description: "Switches a light.",
      parameters: { type: "object", properties: { on: { type: "boolean" } } },
      server: "home",
      tool: "set_light",
    },
  ],
  callTool: (name) =>
    Promise.resolve({
      ok: true,
      output: `${name} done`,
      durationMs: 1,
      outcome: "success" as const,
      server: "home",
      tool: name,
    }),
  onToolsChanged: () => () => undefined,
  status: () => [],
};

const mcpLabels = (conn: FakeConnection): string[] =>
  (conn.session.tools ?? []).flatMap((t) => (t.type === "mcp" ? [t.server_label] : [])).sort();

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("ingress UI in a real browser", () => {
  let fake: FakeRealtimeServer;
  let engine: RealtimeEngine;
  let ingress: FastifyInstance;
  let proxy: IngressProxy;
  let browser: Browser;
  let found: FoundChromium;
  let dataDir: string;
  const wyoming = new WyomingActivity();
  let approvals: ApprovalQueue;
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "browser-test-"));
    const reply = parseWav(await readFile(AUDIO("living_room_24k_sox_vhq.wav")));
    fake = await startFakeRealtime({
      replyAudio: Buffer.from(reply.samples.buffer, reply.samples.byteOffset, reply.samples.byteLength),
      replyTranscript: "The living room light is on.",
      audioSpeed: 4,
    });
    const config = ConfigSchema.parse({
      openai: { api_key: "sk-test", base_url: fake.url, pool_size: 1 },
      mcp_servers: [
        {
          name: "search",
          mode: "native",
          server_url: "https://search.example.com/sse",
          require_approval: "always",
        },
        {
          name: "weather",
          mode: "native",
          server_url: "https://weather.example.com/sse",
          require_approval: "never",
        },
      ],
    });
    const metrics = createMetrics(new Registry(), { defaults: false });
    approvals = new ApprovalQueue({ timeoutS: config.approvals.timeout_s });
    engine = new RealtimeEngine({ config, tools: lightTool, approvals, logger, metrics });
    await engine.warmUp();

    const state = await RuntimeState.load(dataDir, logger);
    const satellites = new SatelliteRegistry();
    // The proxy connects from 127.0.0.1 the way the Supervisor connects from 172.30.32.2.
    ingress = createIngressServer({ logger, allowedAddresses: ["127.0.0.1"] });
    await ingress.register(satelliteRoute, {
      conversations: engine,
      approvals,
      auth: new SatelliteAuth({ token: TALK_TOKEN }),
      logger,
      metrics,
      registry: satellites,
    });
    wyoming.listening(10300);
    const asr = wyoming.begin("asr", "w1");
    asr.stage("transcript", 0.142);
    asr.finish("success");
    wyoming.begin("tts", "w2").stage("first_audio", 0.004);
    await ingress.register(ingressPlugin, {
      servers: new PersistentServerAdmin({ targets: [engine.serverTarget], state, logger }),
      approvals,
      status: (): StatusSnapshot => {
        const s = engine.status();
        return {
          upstream: s.upstream,
          sessions: Object.fromEntries(
            Object.entries(s.sessions).filter(([k, n]) => n > 0 && k !== "closed"),
          ),
          satellites: { connected: satellites.size, conversations: s.conversations },
          wyoming: wyoming.snapshot(),
        };
      },
      satelliteToken: () => SATELLITE_TOKEN,
      talkToken: () => TALK_TOKEN,
      satellitePort: () => 8765,
      logger,
    });
    await ingress.listen({ host: "127.0.0.1", port: 0 });
    const { port } = ingress.server.address() as { port: number };
    proxy = await startIngressProxy({ target: `http://127.0.0.1:${port}` });

    found = await findChromium();
    browser = await chromium.launch({
      executablePath: found.executablePath,
      args: talkPageArgs(AUDIO("kitchen_light_16k.wav")),
      timeout: 20_000,
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await ingress?.close();
    await engine?.close();
    approvals?.cancel();
    await fake?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  async function openAdmin(): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.setDefaultTimeout(15_000);
    await page.goto(`${proxy.url}/`);
    await page.locator('[data-server="search"][data-state="up"]').waitFor();
    return page;
  }

  it("toggles a native server from the UI: applied live to the upstream session and persisted", async () => {
    const conn = fake.connections[0]!;
    expect(mcpLabels(conn)).toEqual(["search", "weather"]);
    const page = await openAdmin();
    await expect(page.locator("#upstream-state").textContent()).resolves.toBe("connected");
    await page.getByRole("switch", { name: "Enable weather" }).uncheck();
    await page.locator('[data-server="weather"][data-enabled="false"]').waitFor();
    await until("a session.update without weather", () =>
      mcpLabels(conn).includes("weather") ? undefined : true,
    );
    expect(mcpLabels(conn)).toEqual(["search"]);
    const saved = JSON.parse(await readFile(join(dataDir, STATE_FILE), "utf8"));
    expect(saved.servers).toEqual({ weather: { enabled: false } });
    expect(proxy.forwarded).toContain("/api/servers/weather");
    await expect(page.locator("#wyoming-state").textContent()).resolves.toBe("listening on 10300");
    const turns = page.locator("#wyoming-turns .wyoming-turn");
    await expect(turns.count()).resolves.toBe(2);
    await expect(turns.nth(0).textContent()).resolves.toMatch(
      /text-to-speech running.*synthesize → first audio: 4 ms/,
    );
    await expect(turns.nth(1).textContent()).resolves.toMatch(
      /speech-to-text success.*end of speech → transcript: 142 ms.*total \d+ ms/,
    );
    await page.locator("#token-show").click();
    await expect(page.locator("#token").textContent()).resolves.toBe(SATELLITE_TOKEN);
    await page.screenshot({ path: join(ARTIFACTS, "ingress-status.png"), fullPage: true });
    await page.close();
  }, 60_000);

  it("talk page: the fixture WAV reaches upstream; the approval asked on the way is approved in the UI; the reply plays", async () => {
    const conn = fake.connections[0]!;
    // The first response asks to run a native tool that needs a person; after approval, a spoken answer.
    fake.script(
      {
        kind: "mcp_approval",
        serverLabel: "search",
        name: "find",
        arguments: '{"query":"living room"}',
        output: "on",
      },
      { kind: "speak" },
    );
    const admin = await openAdmin();
    const talk = await browser.newPage({ viewport: { width: 800, height: 900 } });
    talk.setDefaultTimeout(15_000);
    await talk.goto(`${proxy.url}/talk`);
    await talk.locator("#connect").click();
    await talk.locator("#conn.ready").waitFor();

    const ptt = talk.locator("#ptt");
    await ptt.hover();
    await talk.mouse.down();
    await new Promise((r) => setTimeout(r, 2500));
    await talk.mouse.up();

    // Upstream heard real speech from the page's microphone (the fixture), not silence.
    const commit = await conn.waitFor("input_audio_buffer.commit", () => true, 10_000);
    expect(commit).toBeDefined();
    const appended = Buffer.concat(
      conn.received.flatMap((e) =>
        e.type === "input_audio_buffer.append" ? [Buffer.from(e.audio, "base64")] : [],
      ),
    );
    const sentMs = (appended.length / 2 / 24_000) * 1000;
    expect(sentMs).toBeGreaterThan(1500);
    expect(rms(appended)).toBeGreaterThan(0.02);

    // The approval shows in the admin page with a countdown; approving it there lets the tool run.
    const row = admin.locator("[data-approval]").first();
    await row.waitFor();
    await expect(row.locator(".name").textContent()).resolves.toBe("search → find");
    expect(await row.locator(".countdown").textContent()).toMatch(/^\d+ s$/);
    const decided = new Promise<ApprovalDecision>((resolve) =>
      approvals.once("resolved", (_p, d) => resolve(d)),
    );
    await admin.screenshot({ path: join(ARTIFACTS, "ingress-approval.png"), fullPage: true });
    await row.locator("button.approve").click();
    await expect(decided).resolves.toEqual({ approve: true, source: "ingress" });
    await row.waitFor({ state: "detached" });
    const response = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "mcp_approval_response",
      10_000,
    );
    expect(response.item).toMatchObject({ type: "mcp_approval_response", approve: true });

    // The spoken answer comes back and the page plays it.
    await talk.waitForFunction(
      () => Number(document.querySelector("#played")?.getAttribute("data-ms")) > 1000,
      null,
      {
        timeout: 20_000,
      },
    );
    // The fake speaks the tool's output after an approved mcp_call.
    await talk.locator(".bubble.assistant", { hasText: "The tool said: on" }).waitFor();
    await talk.locator(".bubble.user", { hasText: "turn on the kitchen light" }).waitFor();
    // The page's own approval prompt was settled by the answer given in the admin page.
    await talk.locator(".bubble.system", { hasText: "Approved find" }).waitFor();
    expect(Number(await talk.locator("#sent").getAttribute("data-ms"))).toBeGreaterThan(1500);
    await talk.screenshot({ path: join(ARTIFACTS, "talk-page.png"), fullPage: true });
    await talk.close();
    await admin.close();
  }, 90_000);
  it("talk page: a client tool's prompt comes before it runs, and prompts answered in the admin page are cleared with their outcome", async () => {
    // Turns an earlier test scripted but its event order did not use are dropped first.
    while (fake.takeTurn() !== undefined);
    fake.script(
      { kind: "function_call", name: "set_light", arguments: '{"on":true}' },
      { kind: "function_call", name: "set_light", arguments: '{"on":false}' },
    );
    const admin = await openAdmin();
    const talk = await browser.newPage({ viewport: { width: 390, height: 844 } });
    talk.setDefaultTimeout(15_000);
    await talk.goto(`${proxy.url}/talk`);
    await talk.locator("#connect").click();
    await talk.locator("#conn.ready").waitFor();
    const pushToTalk = async (): Promise<void> => {
      await talk.locator("#ptt").hover();
      await talk.mouse.down();
      await new Promise((r) => setTimeout(r, 1200));
      await talk.mouse.up();
    };
    const bubbles = (): Promise<string[]> =>
      talk.locator("#transcript .bubble.system").evaluateAll((ns) => ns.map((n) => n.textContent ?? ""));
    /** The page's n-th committed turn, on whichever upstream session its conversation took. */
    const committed = (n: number) =>
      until(`turn ${n} committed upstream`, () =>
        fake.connections.find((c) => !c.closed && c.all("input_audio_buffer.commit").length >= n),
      );

    // 1: approved in the admin page. The page shows the prompt while the tool waits (not "Using").
    await pushToTalk();
    await committed(1);
    const prompt = talk.locator(".bubble.system", { hasText: "Allow home → set_light?" });
    await prompt.waitFor();
    expect((await bubbles()).some((b) => b.startsWith("Using set_light"))).toBe(false);
    const row = admin.locator("[data-approval]").first();
    await row.waitFor();
    await row.locator("button.approve").click();
    // The page's prompt is settled by the answer given elsewhere: no buttons left, the outcome shown.
    const approved = talk.locator('.bubble.system[data-outcome="approved"]');
    await approved.waitFor();
    await expect(approved.textContent()).resolves.toBe("Approved set_light");
    await expect(approved.locator("button").count()).resolves.toBe(0);
    await talk.locator(".bubble.system", { hasText: "Used set_light (home)" }).waitFor();
    const order = await bubbles();
    const at = (prefix: string): number => order.findIndex((b) => b.startsWith(prefix));
    expect(at("Approved set_light")).toBeGreaterThanOrEqual(0);
    expect(at("Approved set_light")).toBeLessThan(at("Using set_light (home)"));
    expect(at("Using set_light (home)")).toBeLessThan(at("Used set_light (home)"));
    await talk.locator(".bubble.assistant", { hasText: "The tool said: set_light done" }).waitFor();

    // 2: denied in the admin page: the stale prompt is cleared too, and the tool never runs.
    await pushToTalk();
    await committed(2);
    await talk.locator(".bubble.system", { hasText: "Allow home → set_light?" }).waitFor();
    const second = admin.locator("[data-approval]").first();
    await second.waitFor();
    await second.locator("button.deny").click();
    const denied = talk.locator('.bubble.system[data-outcome="denied"]');
    await denied.waitFor();
    await expect(denied.textContent()).resolves.toBe("Denied set_light");
    await expect(talk.locator("#transcript button").count()).resolves.toBe(0);
    expect((await bubbles()).filter((b) => b.startsWith("Using set_light"))).toHaveLength(1);
    await talk.screenshot({ path: join(ARTIFACTS, "talk-approvals.png"), fullPage: true });
    await talk.close();
    await admin.close();
  }, 90_000);

  it("talk page: the user's line stays before the reply when the transcription completes after the reply's deltas", async () => {
    // Upstream transcribes beside the response: here the reply's text and audio come first.
    fake.opts.userTranscriptDelayMs = 3000;
    const talk = await browser.newPage({ viewport: { width: 800, height: 900 } });
    talk.setDefaultTimeout(15_000);
    try {
      await talk.goto(`${proxy.url}/talk`);
      await talk.locator("#connect").click();
      await talk.locator("#conn.ready").waitFor();
      await talk.locator("#ptt").hover();
      await talk.mouse.down();
      await new Promise((r) => setTimeout(r, 1500));
      await talk.mouse.up();
      // The reply is on the page before the user's words are transcribed.
      await talk.locator(".bubble.assistant").first().waitFor();
      expect(await talk.locator(".bubble.user").count()).toBe(0);
      await talk.locator(".bubble.user", { hasText: "turn on the kitchen light" }).waitFor();
      await talk.locator(".bubble.assistant:not(.partial)").first().waitFor();
      const lines = await talk
        .locator("#transcript .bubble.user, #transcript .bubble.assistant")
        .evaluateAll((nodes) => nodes.map((n) => `${n.classList[1]}: ${n.textContent}`));
      expect(lines).toEqual(["user: turn on the kitchen light", "assistant: The living room light is on."]);
      await talk.screenshot({ path: join(ARTIFACTS, "talk-order.png"), fullPage: true });
    } finally {
      fake.opts.userTranscriptDelayMs = undefined;
      await talk.close();
    }
  }, 60_000);

  it("an approval whose call ended says so in its row: cancelled, why, and no buttons left", async () => {
    const page = await openAdmin();
    const asked = approvals.request({
      server: "everything",
      tool: "unlock_door",
      arguments: JSON.stringify({ door: "front" }),
      mode: "client",
    });
    try {
      const row = page.locator(`[data-approval="${asked.id}"]`);
      await row.getByRole("button", { name: "Approve" }).waitFor();
      // The Wyoming conversation call that asked for it ended: its approvals are denied as cancelled.
      approvals.cancel(
        (p) => p.id === asked.id,
        "The voice request that asked for it ended (Home Assistant stopped waiting for the answer) " +
          "before anyone decided, so it was not run.",
      );
      await page.locator(`[data-approval="${asked.id}"][data-settled="cancelled"]`).waitFor();
      await expect(row.textContent()).resolves.toMatch(
        /Cancelled: The voice request that asked for it ended \(Home Assistant stopped waiting/,
      );
      await expect(row.locator("button").count()).resolves.toBe(0);
      await page.screenshot({ path: join(ARTIFACTS, "ingress-approval-cancelled.png"), fullPage: true });
    } finally {
      await page.close();
    }
  }, 60_000);

  it("on a phone (390 px) inside Home Assistant's panel: no second app bar, the satellite URL, an approval card that fits and works", async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    page.setDefaultTimeout(15_000);
    const asked = approvals.request({
      server: "home_assistant",
      tool: "HassLightSet",
      arguments: JSON.stringify({ name: "Living room ceiling light", brightness: 80, color: "warm_white" }),
      mode: "client",
      satelliteId: "living-room-voice-satellite",
    });
    try {
      await page.goto(`${proxy.url}/`);
      const row = page.locator(`[data-approval="${asked.id}"]`);
      await row.waitFor();
      // Opened through ingress: the page shows its tabs, not a second title bar under Home Assistant's.
      await expect(page.locator("header.toolbar h1").isHidden()).resolves.toBe(true);
      await expect(page.getByRole("link", { name: "Talk" }).isVisible()).resolves.toBe(true);
      await expect(page.locator("#satellite-url").textContent()).resolves.toBe(
        `ws://127.0.0.1:8765/api/v1/satellite`,
      );
      // Nothing is wider than the screen, and both buttons are whole and on it.
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(scrollWidth).toBeLessThanOrEqual(390);
      for (const name of ["Approve", "Deny"]) {
        const box = (await row.getByRole("button", { name }).boundingBox())!;
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width).toBeLessThanOrEqual(390);
        expect(box.height).toBeGreaterThanOrEqual(36);
      }
      await page.screenshot({ path: join(ARTIFACTS, "ingress-390.png"), fullPage: true });
      await row.getByRole("button", { name: "Approve" }).click();
      await expect(asked.decision).resolves.toEqual({ approve: true, source: "ingress" });
    } finally {
      approvals.cancel((p) => p.id === asked.id);
      await page.close();
    }
  }, 60_000);

  it("the Chromium inside the @sparticuz/chromium package launches and shows the status page", async () => {
    // What a machine without a system Chromium gets (whatever this one has).
    const packaged = await findChromium([], {});
    expect(packaged.from).toBe("@sparticuz/chromium");
    const own = await chromium.launch({
      executablePath: packaged.executablePath,
      args: [...CHROMIUM_ARGS],
      timeout: 20_000,
    });
    try {
      const page = await own.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(proxy.url);
      await page.locator("#upstream-state").filter({ hasText: "connected" }).waitFor();
    } finally {
      await own.close();
    }
  }, 60_000);

  it("talk page over plain HTTP from a LAN name: says why there is no microphone and what to do", async () => {
    // The browser resolves homeassistant.local to this machine, so the page's origin is
    // http://homeassistant.local:PORT — not HTTPS, not localhost — exactly what a user on a plain-HTTP
    // Home Assistant gets. Chromium decides the secure context from that origin, with no override.
    const lan = await chromium.launch({
      executablePath: found.executablePath,
      args: [...CHROMIUM_ARGS, "--host-resolver-rules=MAP homeassistant.local 127.0.0.1"],
      timeout: 20_000,
    });
    try {
      const page = await lan.newPage({ viewport: { width: 390, height: 844 } });
      page.setDefaultTimeout(15_000);
      const url = new URL(proxy.url);
      url.hostname = "homeassistant.local";
      await page.goto(`${url.href}/talk`);
      const help = page.locator("#mic-help");
      await help.waitFor({ state: "visible" });
      await expect(page.evaluate(() => window.isSecureContext)).resolves.toBe(false);
      await expect(page.evaluate(() => typeof navigator.mediaDevices)).resolves.toBe("undefined");
      const text = (await help.textContent())?.replace(/\s+/g, " ") ?? "";
      expect(text).toContain(`this page came from http://homeassistant.local:${url.port}`);
      expect(text).toContain("HTTPS");
      expect(text).toContain("Home Assistant Cloud");
      expect(text).toContain("companion app");
      expect(text).toContain("http://localhost:8123");
      await expect(page.locator("#connect").isDisabled()).resolves.toBe(true);
      expect(text).not.toContain("getUserMedia");
      await page.screenshot({ path: join(ARTIFACTS, "talk-insecure.png"), fullPage: true });

      // The same page from a secure context (loopback) offers the microphone and shows no such notice.
      const local = await lan.newPage();
      await local.goto(`${proxy.url}/talk`);
      await expect(local.evaluate(() => window.isSecureContext)).resolves.toBe(true);
      await expect(local.locator("#mic-help").isHidden()).resolves.toBe(true);
      await expect(local.locator("#connect").isEnabled()).resolves.toBe(true);
    } finally {
      await lan.close();
    }
  }, 60_000);
});

// ── the cost panel (kept in its own block) ─────────────────────────────────────────────────────

describe("cost in a real browser", () => {
  let fake: FakeRealtimeServer;
  let engine: RealtimeEngine;
  let ingress: FastifyInstance;
  let proxy: IngressProxy;
  let browser: Browser;
  let dataDir: string;
  let cost: CostMeter;
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dataDir = await mkdtemp(join(tmpdir(), "browser-cost-"));
    const reply = parseWav(await readFile(AUDIO("living_room_24k_sox_vhq.wav")));
    fake = await startFakeRealtime({
      replyAudio: Buffer.from(reply.samples.buffer, reply.samples.byteOffset, reply.samples.byteLength),
      replyTranscript: "The living room light is on.",
      audioSpeed: 8,
    });
    const config = ConfigSchema.parse({
      openai: { api_key: "sk-test", base_url: fake.url, pool_size: 0 },
      cost: { daily_budget_usd: 0.001, device_daily_budget_usd: 0.5 },
    });
    const metrics = createMetrics(new Registry(), { defaults: false });
    const approvals = new ApprovalQueue({ timeoutS: 30 });
    cost = new CostMeter({
      budget: { dailyUsd: 0.001, deviceDailyUsd: 0.5, warnPercent: 80 },
      maxConversationMs: 0,
      prices: new PriceTable(),
      ledger: new CostLedger({ dataDir, timeZone: () => "UTC", logger }),
      metrics,
      logger,
    });
    await cost.load();
    engine = new RealtimeEngine({ config, tools: lightTool, approvals, logger, metrics, cost });
    ingress = createIngressServer({ logger, allowedAddresses: ["127.0.0.1"] });
    await ingress.register(satelliteRoute, {
      conversations: engine,
      approvals,
      auth: new SatelliteAuth({ token: TALK_TOKEN }),
      logger,
      metrics,
      talkPage: true,
    });
    await ingress.register(ingressPlugin, {
      servers: new PersistentServerAdmin({
        targets: [engine.serverTarget],
        state: await RuntimeState.load(dataDir, logger),
        logger,
      }),
      approvals,
      status: (): StatusSnapshot => ({
        upstream: engine.status().upstream,
        sessions: {},
        satellites: { connected: 0, conversations: engine.status().conversations },
      }),
      satelliteToken: () => SATELLITE_TOKEN,
      talkToken: () => TALK_TOKEN,
      cost,
      logger,
    });
    await ingress.listen({ host: "127.0.0.1", port: 0 });
    const { port } = ingress.server.address() as { port: number };
    proxy = await startIngressProxy({ target: `http://127.0.0.1:${port}` });
    browser = await chromium.launch({
      executablePath: (await findChromium()).executablePath,
      args: talkPageArgs(AUDIO("kitchen_light_16k.wav")),
      timeout: 20_000,
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await ingress?.close();
    await engine?.close();
    await cost?.close();
    await fake?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  it("the talk page shows each line's cost; the status page today's spend against the budget, per device, and allows more", async () => {
    const talk = await browser.newPage({ viewport: { width: 800, height: 900 } });
    talk.setDefaultTimeout(15_000);
    await talk.goto(`${proxy.url}/talk`);
    await talk.locator("#connect").click();
    await talk.locator("#conn.ready").waitFor();
    await talk.locator("#ptt").hover();
    await talk.mouse.down();
    await new Promise((r) => setTimeout(r, 2500));
    await talk.mouse.up();
    const answer = talk.locator(".bubble.assistant", { hasText: "The living room light is on." });
    await answer.locator(".cost").waitFor();
    const report = await cost.report();
    const device = report.devices.find((d) => d.device === "talk");
    expect(device).toMatchObject({ route: "talk" });
    // The answer's line carries what its responses cost, as the ledger priced them.
    const answered = cost.recent({ id: "talk", route: "talk" }).filter((i) => i.kind === "response");
    const answerUsd = answered.reduce((a, i) => a + i.usd!, 0);
    await expect(answer.locator(".cost").textContent()).resolves.toBe(
      answerUsd < 0.01 ? `$${answerUsd.toFixed(4)}` : `$${answerUsd.toFixed(2)}`,
    );
    await talk.locator(".bubble.user .cost").waitFor();
    await talk.screenshot({ path: join(ARTIFACTS, "talk-page-costs.png"), fullPage: true });
    await talk.close();

    const admin = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    admin.setDefaultTimeout(15_000);
    await admin.goto(`${proxy.url}/`);
    await admin.locator('#cost-devices [data-device="talk"]').waitFor();
    const spent = (await cost.report()).spent_usd;
    expect(spent).toBeGreaterThan(0.001); // one answer with about 2 s of speech is more than a tenth of a cent
    await expect(admin.locator("#cost-spent").textContent()).resolves.toBe(
      `${spent < 0.01 ? `$${spent.toFixed(4)}` : `$${spent.toFixed(2)}`} of $0.0010 today`,
    );
    await expect(admin.locator('#cost-devices [data-device="talk"]').textContent()).resolves.toMatch(
      /talk talk page.*of \$0\.50/,
    );
    // Past the budget: the page says so, and more can be allowed for today.
    await admin.locator("#cost-blocked:not([hidden])").waitFor();
    await admin.locator("#cost-allow-usd").fill("2");
    await admin.locator("#cost-allow-button").click();
    await admin.locator("#cost-spent", { hasText: "of $2.00 today" }).waitFor();
    await admin.locator("#cost-blocked[hidden]").waitFor({ state: "attached" });
    expect((await cost.report()).budget_usd).toBe(2.001);
    await admin.screenshot({ path: join(ARTIFACTS, "ingress-cost.png"), fullPage: true });
    await admin.close();
  }, 60_000);
});

describe("ESPHome voice devices in a real browser", () => {
  let h: Harness;
  let proxy: IngressProxy;
  let browser: Browser;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    h = await startHarness({ devices: [{}], overrides: { ownershipRetryMs: 300 } });
    proxy = await startIngressProxy({ target: h.ingress });
    browser = await chromium.launch({
      executablePath: (await findChromium()).executablePath,
      args: [...CHROMIUM_ARGS],
      timeout: 20_000,
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await h?.close();
  }, 30_000);

  it("the card lists the emulated Voice PE with its owner in words; the switch takes it over from Home Assistant and gives it back", async () => {
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.connected);
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.setDefaultTimeout(15_000);
    await page.goto(`${proxy.url}/`);
    const row = page.locator(`#esphome-card:not([hidden]) .esphome-device[data-device="${dev.name}"]`);
    await row.locator(".secondary", { hasText: "left to Home Assistant" }).waitFor();
    await expect(row.textContent()).resolves.toContain(`127.0.0.1:${dev.port} · listed in the options`);
    const toggle = row.getByRole("switch", { name: `Answer ${dev.name} with OpenVoice` });
    expect(await toggle.isChecked()).toBe(false);

    // On: OpenVoice answers the device.
    await toggle.check({ force: true });
    await row.locator(".secondary", { hasText: "answered by OpenVoice" }).waitFor();
    expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);
    // Off: given back.
    await toggle.uncheck({ force: true });
    await row.locator(".secondary", { hasText: "left to Home Assistant" }).waitFor();
    await until("the voice assistant given back", () => (dev.voiceOwner === null ? true : undefined));
    expect(await toggle.isChecked()).toBe(false);

    // Home Assistant answers it now: switched on, nothing is stolen, and the row says so in words.
    const homeAssistant = await dev.connectAsOtherClient();
    await toggle.check({ force: true });
    await row.locator(".secondary", { hasText: "answered by Home Assistant (or another client)" }).waitFor();
    await row
      .locator(".error", { hasText: `Home Assistant still owns the voice assistant of ${dev.name}` })
      .waitFor();
    expect(dev.voiceOwner).toBe("Home Assistant 2026.9.0");
    await page.screenshot({ path: join(ARTIFACTS, "ingress-esphome-owned-elsewhere.png"), fullPage: true });
    // Home Assistant lets go (its entity disabled): OpenVoice answers the device, the words go.
    homeAssistant.subscribe(false);
    await row.locator(".secondary", { hasText: "answered by OpenVoice" }).waitFor();
    await row.locator(".error:empty").waitFor({ state: "attached" });
    expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);
    expect(await toggle.isChecked()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, "ingress-esphome.png"), fullPage: true });
    // The choice is kept in /data.
    const saved = await readFile(join(h.dataDir, STATE_FILE), "utf8");
    expect(saved).toContain(dev.name);
    homeAssistant.close();
    await page.close();
  }, 60_000);
});
