/**
 * The real process: `node dist/main.js` (built by `npm test` before vitest runs).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const mainJs = join(root, "dist", "main.js");
const fixture = (name: string): string => join(root, "test", "fixtures", "configs", name);

/** Environment without anything that would make the child think it is an add-on. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...extra };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
}

/**
 * Starts `node dist/main.js` on boot.yaml with `dataDir`, hands the child to `track` at once (so the
 * test's cleanup can kill it), and resolves once its port file is written.
 */
async function boot(
  dir: string,
  dataDir: string,
  track: (child: ChildProcess) => void,
): Promise<{ ports: { satellite: number; ingress: number }; output: () => string }> {
  const portFile = join(dir, "ports.json");
  let output = "";
  const child = spawn(process.execPath, [mainJs, "--config", fixture("boot.yaml"), "--port-file", portFile], {
    env: childEnv({ OPENVOICE_DATA_DIR: dataDir }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(child);
  child.stdout.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr.on("data", (b: Buffer) => (output += b.toString()));
  const ports = await waitFor(
    "the port file",
    async () => JSON.parse(await readFile(portFile, "utf8")) as { satellite: number; ingress: number },
    15_000,
  );
  return { ports, output: () => output };
}

beforeAll(() => {
  if (!existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does)");
});

describe("the service process", () => {
  let dir: string | undefined;
  let child: ChildProcess | undefined;

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exitOf(child);
    }
    child = undefined;
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("boots, says why it is not ready, and exits 0 within 5 s of SIGTERM", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-proc-"));
    const dataDir = join(dir, "data");
    const { ports, output: log } = await boot(dir, dataDir, (c) => (child = c));
    const base = `http://127.0.0.1:${ports.satellite}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    // Nothing listens where the upstream should be: not ready, and /readyz says why in words.
    const notReady = await waitFor(
      "/readyz naming the upstream",
      async () => {
        const res = await fetch(`${base}/readyz`);
        const body = (await res.json()) as { reasons?: string[] };
        return res.status === 503 && body.reasons?.some((r) => r.startsWith("upstream: Cannot reach OpenAI"))
          ? body
          : undefined;
      },
      10_000,
    );
    expect(notReady.reasons).toHaveLength(1);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    // the ingress instance is up on loopback
    expect((await fetch(`http://127.0.0.1:${ports.ingress}/nope`)).status).toBe(404);
    expect((await stat(dataDir)).isDirectory()).toBe(true);

    const t0 = Date.now();
    child!.kill("SIGTERM");
    const exit = await Promise.race([exitOf(child!), sleep(8_000).then(() => undefined)]);
    const elapsed = Date.now() - t0;
    expect(exit, `no exit after SIGTERM; output:\n${log()}`).toEqual({ code: 0, signal: null });
    expect(elapsed).toBeLessThan(5_000);
    // readable log lines, and the API key never printed
    expect(log()).toMatch(/^\S+Z INFO configuration loaded /m);
    expect(log()).toMatch(/ INFO shutting down why=SIGTERM/);
    expect(log()).toContain(
      `DEBUG module compile cache status=enabled directory=${dataDir}/cache/node-compile`,
    );
    expect(log()).not.toContain("sk-process-test-key");
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('a start-up failure logs "stopped" and exits 1', async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-proc-"));
    // The data dir cannot be created: its parent is a file.
    await writeFile(join(dir, "file"), "");
    const r = spawnSync(process.execPath, [mainJs, "--config", fixture("boot.yaml")], {
      env: childEnv({ OPENVOICE_DATA_DIR: join(dir, "file", "data") }),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/ FATAL start-up failed /);
    expect(r.stdout).toMatch(/ INFO stopped clean=false/);
  });

  it("keeps V8's compiled code under <data>/cache/node-compile, and the next start reads it back", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-proc-"));
    const env = childEnv({ OPENVOICE_DATA_DIR: join(dir, "data") });
    const args = [mainJs, "--config", fixture("boot.yaml"), "--check-config"];
    const first = spawnSync(process.execPath, args, { env, encoding: "utf8", timeout: 15_000 });
    expect(first.status, first.stderr).toBe(0);
    const entries = await readdir(join(dir, "data", "cache", "node-compile"), { recursive: true });
    expect(entries.length).toBeGreaterThan(1);
    const second = spawnSync(process.execPath, args, {
      env: { ...env, NODE_DEBUG_NATIVE: "COMPILE_CACHE" },
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/V8 code cache for ESM file:\S+\/dist\/cli-\S+\.js was accepted/);
  });

  it("runs without the compile cache when the data folder cannot hold it", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-proc-"));
    const dataDir = join(dir, "data");
    await mkdir(dataDir);
    await writeFile(join(dataDir, "cache"), "a file where the cache folder would go");
    const { ports, output } = await boot(dir, dataDir, (c) => (child = c));
    expect((await fetch(`http://127.0.0.1:${ports.satellite}/healthz`)).status).toBe(200);
    expect(output()).toMatch(/ DEBUG module compile cache status=failed /);
    child!.kill("SIGTERM");
    expect(await exitOf(child!), output()).toEqual({ code: 0, signal: null });
  });

  it('a failure once listening (the port file cannot be written) logs "stopped" and exits 1', async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-proc-"));
    const r = spawnSync(
      process.execPath,
      [mainJs, "--config", fixture("boot.yaml"), "--port-file", join(dir, "missing", "ports.json")],
      { env: childEnv({ OPENVOICE_DATA_DIR: join(dir, "data") }), encoding: "utf8", timeout: 15_000 },
    );
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/ FATAL cannot listen /);
    expect(r.stdout).toMatch(/ INFO stopped clean=/);
  });

  it("--check-config prints the masked effective config and exits 0", () => {
    const r = spawnSync(process.execPath, [mainJs, "--config", fixture("hybrid.yaml"), "--check-config"], {
      env: childEnv({ OPENAI_API_KEY: "sk-visible-if-broken", HA_TOKEN: "ha-visible-if-broken" }),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("filesystem:");
    expect(r.stdout).toContain('api_key: "********"');
    expect(r.stdout + r.stderr).not.toContain("visible-if-broken");
  });

  it("--check-config prints every problem with its path and exits 2", () => {
    const r = spawnSync(process.execPath, [mainJs, "--config", fixture("invalid.yaml"), "--check-config"], {
      env: childEnv({}),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toEqual(
      expect.arrayContaining([
        "openai.api_key: environment variable OPENAI_API_KEY is not set",
        "mcp_servers.filesystem.command: required when transport is stdio",
        expect.stringMatching(/^log_level: /),
        "warning: openai.voise: unknown key, ignored (did you mean voice?)",
      ]),
    );
    expect(r.stdout).toBe("");
  });

  it("--check-config warns about a stdio command that is not installed, in the add-on's words", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-cmd-"));
    const file = join(dir, "openvoice.yaml");
    await writeFile(
      file,
      "openai: {api_key: sk-x}\nmcp_servers:\n" +
        "  git: {mode: client, transport: stdio, command: uvx-not-installed, args: [mcp-server-git]}\n" +
        `  everything: {mode: client, transport: stdio, command: ${JSON.stringify(process.execPath)}}\n`,
    );
    const outside = spawnSync(process.execPath, [mainJs, "--config", file, "--check-config"], {
      env: childEnv({}),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(outside.status, outside.stderr).toBe(0);
    expect(outside.stderr.trim().split("\n")).toEqual([
      "warning: mcp_servers.git.command: command `uvx-not-installed` not found on PATH",
    ]);
    const addon = spawnSync(process.execPath, [mainJs, "--config", file, "--check-config"], {
      env: childEnv({ SUPERVISOR_TOKEN: "supervisor-token" }),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(addon.status, addon.stderr).toBe(0);
    expect(addon.stderr).toContain(
      "warning: mcp_servers.git.command: command `uvx-not-installed` not found in the add-on image",
    );
  });

  it("logs a stdio command that is not installed at start-up, and the status API shows it in words", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-cmd-"));
    const file = join(dir, "openvoice.yaml");
    const portFile = join(dir, "ports.json");
    await writeFile(
      file,
      (await readFile(fixture("boot.yaml"), "utf8")) +
        "mcp_servers:\n  git: {mode: client, transport: stdio, command: uvx-not-installed, args: [mcp-server-git]}\n",
    );
    let output = "";
    child = spawn(process.execPath, [mainJs, "--config", file, "--port-file", portFile], {
      env: childEnv({ OPENVOICE_DATA_DIR: join(dir, "data") }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (output += b.toString()));
    const ports = await waitFor(
      "the port file",
      async () => JSON.parse(await readFile(portFile, "utf8")) as { satellite: number; ingress: number },
      15_000,
    );
    expect(output).toMatch(/ WARN mcp_servers\.git\.command: command `uvx-not-installed` not found on PATH/);
    type Servers = { servers: { name: string; state: string; lastError?: string; restarts: number }[] };
    const git = await waitFor(
      "the server's status",
      async () => {
        const res = await fetch(`http://127.0.0.1:${ports.ingress}/api/servers`);
        const body = (await res.json()) as Servers;
        return body.servers.find((s) => s.name === "git" && s.lastError !== undefined);
      },
      10_000,
    );
    expect(git).toMatchObject({
      state: "down",
      lastError: "command `uvx-not-installed` not found on PATH",
      restarts: 0,
    });
    expect(output).not.toContain("ENOENT");
  });

  it("--help speaks of settings, the add-on and satellites, on stdout", () => {
    const r = spawnSync(process.execPath, [mainJs, "--help"], { env: childEnv({}), encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("the options you set on the add-on's Configuration page");
    expect(r.stdout).toContain("ws://HOST:8765/api/v1/satellite");
    expect(r.stderr).toBe("");
  });

  it("OPENVOICE_CONFIG is an alternative to --config; no source at all is a usage error", () => {
    const viaEnv = spawnSync(process.execPath, [mainJs, "--check-config"], {
      env: childEnv({ OPENVOICE_CONFIG: fixture("boot.yaml") }),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(viaEnv.status, viaEnv.stderr).toBe(0);
    expect(viaEnv.stdout).toContain("satellite_port: 0");
    const none = spawnSync(process.execPath, [mainJs, "--check-config"], {
      env: childEnv({}),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(none.status).toBe(2);
    expect(none.stderr).toContain("no configuration");
  });

  it("reads the add-on options form with --options", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-opts-"));
    const file = join(dir, "options.json");
    await writeFile(
      file,
      JSON.stringify({
        openai: { api_key: "sk-opt", model: "gpt-realtime", voice: "marin" },
        mcp_servers: [{ name: "files", mode: "client", transport: "stdio", command: "npx", env: ["A=1"] }],
        satellites: { devices: [] },
        log_level: "info",
      }),
    );
    const r = spawnSync(process.execPath, [mainJs, "--options", file, "--check-config"], {
      env: childEnv({}),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/files:\n\s+mode: client/);
    expect(r.stdout).toMatch(/env:\n\s+A: "\*\*\*\*\*\*\*\*"/);
  });
});
