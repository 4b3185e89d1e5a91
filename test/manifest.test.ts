/**
 * The add-on packaging: `config.yaml` against the add-on linter's schema and rules, and options /
 * schema / translations / DOCS.md / the config model kept in lockstep. `UPDATE_DOCS=1` rewrites the
 * generated error list in DOCS.md from `src/errors.ts`.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { z } from "zod";
import { parseConfig } from "../src/config/load.js";
import { ConfigSchema } from "../src/config/model.js";
import {
  API_ERRORS,
  ESPHOME_CONNECT_ERRORS,
  ESPHOME_VOICE_ERRORS,
  SATELLITE_ERRORS,
  WYOMING_ERRORS,
  type ErrorSpec,
} from "../src/errors.js";
import { INHERITED_ENV } from "../src/mcp/env.js";
import { lacks } from "./helpers/tools.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const read = (p: string): string => readFileSync(join(root, p), "utf8");
/** The add-on linter's schema is test data in test/fixtures/addon-linter; override with ADDON_LINTER_DIR. */
const linterDir = process.env.ADDON_LINTER_DIR ?? join(root, "test", "fixtures", "addon-linter");

type Yaml = Record<string, unknown>;
const manifest = parse(read("config.yaml")) as Yaml;
const translations = parse(read("translations/en.yaml")) as {
  configuration: Record<
    string,
    { name?: string; description?: string; fields?: Record<string, { name?: string; description?: string }> }
  >;
  network: Record<string, string>;
};
const docs = read("DOCS.md");

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Option paths: `a.b` for dicts, `a[].b` for lists of dicts. */
function schemaPaths(schema: unknown, prefix = ""): string[] {
  if (!isRecord(schema)) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(schema)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (isRecord(v)) out.push(...schemaPaths(v, p));
    else if (Array.isArray(v) && isRecord(v[0])) out.push(...schemaPaths(v[0], `${p}[]`));
    else out.push(p);
  }
  return out;
}

function unwrap(s: z.ZodType): z.ZodType {
  let t = s;
  while (t instanceof z.ZodDefault || t instanceof z.ZodOptional) t = t.unwrap() as z.ZodType;
  return t;
}

/** The same paths, from the zod model. */
function modelPaths(schema: z.ZodType, prefix = ""): string[] {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject) {
    return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) =>
      modelPaths(v, prefix ? `${prefix}.${k}` : k),
    );
  }
  if (s instanceof z.ZodArray && unwrap(s.element as z.ZodType) instanceof z.ZodObject)
    return modelPaths(s.element as z.ZodType, `${prefix}[]`);
  return [prefix];
}

/** Keys that only exist in the options form (folded into `require_approval` by the loader). */
const OPTIONS_FORM_ONLY = /\.approval_(always|never)$/;
/** Model options the add-on UI does not offer: its ports are fixed in the container. */
const YAML_ONLY = /^listen\./;

const schemaList = schemaPaths(manifest.schema);
const modelList = modelPaths(ConfigSchema);

function docsSection(startHeading: string): string {
  const start = docs.indexOf(`\n## ${startHeading}\n`);
  expect(start, `DOCS.md has no "## ${startHeading}"`).toBeGreaterThanOrEqual(0);
  const end = docs.indexOf("\n## ", start + 4);
  return docs.slice(start, end === -1 ? undefined : end);
}

/** How DOCS.md names an option: lists of servers by `<name>`, devices as `devices[]`. */
const docName = (p: string): string => p.replace(/^mcp_servers\[\]/, "mcp_servers.<name>");

describe("config.yaml against the add-on linter", () => {
  const schemaFile = join(linterDir, "config.schema.json");
  if (!existsSync(schemaFile)) throw new Error(`${schemaFile} is missing: set ADDON_LINTER_DIR`);
  const schema = JSON.parse(readFileSync(schemaFile, "utf8").replaceAll("(?P<", "(?<")) as {
    properties: Record<string, { default?: unknown }>;
  };

  it("validates against config.schema.json", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    addFormats.default(ajv);
    const validate = ajv.compile(schema);
    const valid = validate(manifest);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it("sets no key to its schema default", () => {
    const redundant = Object.entries(manifest).filter(([k, v]) => {
      const prop = schema.properties[k];
      return prop !== undefined && "default" in prop && JSON.stringify(prop.default) === JSON.stringify(v);
    });
    expect(redundant.map(([k]) => k)).toEqual([]);
  });

  it("follows the linter's extra rules", () => {
    expect(manifest).not.toHaveProperty("watchdog");
    expect(manifest.ingress && "webui" in manifest).toBe(false);
    if ("ingress_port" in manifest && manifest.ingress_port !== 8099)
      expect(manifest.host_network).toBe(true);
    expect(manifest.arch).toEqual(["aarch64", "amd64"]);
  });

  it("declares what the service needs", () => {
    expect(manifest).toMatchObject({ ingress: true, init: false, homeassistant_api: true });
    expect(manifest.ports).toEqual({ "8765/tcp": 8765, "10300/tcp": null, "8080/tcp": 8080 });
    expect(manifest.discovery).toEqual(["wyoming"]);
    expect(manifest.map).toEqual(expect.arrayContaining([expect.objectContaining({ type: "addon_config" })]));
  });

  it("has the package's version, and a CHANGELOG entry for it", () => {
    const pkg = JSON.parse(read("package.json")) as { version: string };
    expect(manifest.version).toBe(pkg.version);
    expect(read("CHANGELOG.md")).toContain(`\n## ${pkg.version}\n`);
  });

  it("is the only file named config.{yaml,yml,json} in the repository", () => {
    const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
      cwd: root,
      encoding: "utf8",
    })
      .split("\n")
      .filter((f) => /(^|\/)config\.(ya?ml|json)$/.test(f));
    expect(files).toEqual(["config.yaml"]);
  });
});

describe("options, schema, translations, DOCS.md and the model in lockstep", () => {
  const SUPERVISOR_TYPE =
    /^(str|password|bool|email|url|port|device|int(\(-?\d*,-?\d*\))?|float(\([-\d.]*,[-\d.]*\))?|list\([^()|]+(\|[^()|]+)*\)|match\(.+\))\??$/;

  it("uses only Supervisor schema types", () => {
    const bad: string[] = [];
    const walk = (s: unknown, p: string): void => {
      if (isRecord(s)) for (const [k, v] of Object.entries(s)) walk(v, p ? `${p}.${k}` : k);
      else if (Array.isArray(s)) walk(s[0], `${p}[]`);
      else if (typeof s !== "string" || !SUPERVISOR_TYPE.test(s)) bad.push(`${p}: ${String(s)}`);
    };
    walk(manifest.schema, "");
    expect(bad).toEqual([]);
  });

  it("gives every option in options a schema entry", () => {
    const missing = schemaPaths(manifest.options).filter(
      (p) => !schemaList.some((s) => s === p || s.startsWith(`${p}.`) || s.startsWith(`${p}[]`)),
    );
    expect(missing).toEqual([]);
  });

  it("offers every model option in the UI, except the YAML-only ones", () => {
    const offered = new Set(schemaList);
    expect(modelList.filter((p) => !offered.has(p) && !YAML_ONLY.test(p))).toEqual([]);
    expect(schemaList.filter((p) => !modelList.includes(p) && !OPTIONS_FORM_ONLY.test(p))).toEqual([]);
  });

  it("names and describes every option and port in translations/en.yaml", () => {
    const expected = new Set(schemaList.map((p) => p.replaceAll("[]", "").split(".").slice(0, 2).join(".")));
    const translated = new Set<string>();
    for (const [k, v] of Object.entries(translations.configuration)) {
      expect(v.name && v.description, `translation of ${k}`).toBeTruthy();
      if (!v.fields) translated.add(k);
      for (const [f, fv] of Object.entries(v.fields ?? {})) {
        expect(fv.name && fv.description, `translation of ${k}.${f}`).toBeTruthy();
        translated.add(`${k}.${f}`);
      }
    }
    expect([...translated].sort()).toEqual([...expected].sort());
    expect(Object.keys(translations.network).sort()).toEqual(Object.keys(manifest.ports as Yaml).sort());
  });

  it("documents every option (UI and YAML-only) in DOCS.md", () => {
    const section = docsSection("Configuration");
    const all = [...new Set([...schemaList, ...modelList])];
    expect(all.filter((p) => !section.includes(`\`${docName(p)}\``))).toEqual([]);
  });

  it("the options defaults load once an API key is entered, without warnings", () => {
    const options = structuredClone(manifest.options) as { openai: { api_key: string } };
    options.openai.api_key = "sk-entered-in-the-ui";
    const r = parseConfig(JSON.stringify(options), "options", {});
    expect(r.ok ? [] : r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
  });

  it("the loader knows every key the UI can send", () => {
    const sample = (t: unknown): unknown => {
      if (isRecord(t)) return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, sample(v)]));
      if (Array.isArray(t)) return [sample(t[0])];
      return "x";
    };
    const r = parseConfig(JSON.stringify(sample(manifest.schema)), "options", {});
    expect(r.warnings.filter((w) => w.message.startsWith("unknown key"))).toEqual([]);
  });
});

function errorTable(errors: Record<string, ErrorSpec>, kind: "satellite" | "api"): string {
  const rows = Object.entries(errors).map(([code, e]) =>
    kind === "satellite"
      ? `| \`${code}\` | ${e.fatal ? `yes (${e.status})` : "no"} | ${e.message} |`
      : `| \`${code}\` | ${e.status} | ${e.message} |`,
  );
  const head =
    kind === "satellite"
      ? "| code | closes the connection (close code) | meaning |\n|---|---|---|"
      : "| code | HTTP status | meaning |\n|---|---|---|";
  return `${head}\n${rows.join("\n")}`;
}

/** The generated part of the "Error codes" section. */
function renderErrors(): string {
  return [
    'Satellites receive `{"type":"error","code","message","fatal"}`; when `fatal` is true the',
    "connection is closed with the close code shown.",
    "",
    errorTable(SATELLITE_ERRORS, "satellite"),
    "",
    'The admin API and `/metrics` answer errors with `{"error":{"code","message"}}` and the HTTP status shown.',
    "",
    errorTable(API_ERRORS, "api"),
    "",
    "The Wyoming service answers bad input and failed calls with `error {text, code}` and then closes the",
    "connection; `text` is a sentence for people.",
    "",
    "| code | meaning |\n|---|---|",
    ...Object.entries(WYOMING_ERRORS).map(([code, e]) => `| \`${code}\` | ${e.message} |`),
    "",
    "An ESPHome voice device is sent the voice event `ERROR {code, message}` then `RUN_END` when a run fails",
    "(a code of the realtime engine, such as `too_many_conversations`, is passed on as it is):",
    "",
    "| code | meaning |\n|---|---|",
    ...Object.entries(ESPHOME_VOICE_ERRORS).map(([code, e]) => `| \`${code}\` | ${e.message} |`),
    "",
    "Why an ESPHome device is not connected (shown as `error` in `GET /api/esphome`, in words):",
    "",
    "| code | meaning |\n|---|---|",
    ...Object.entries(ESPHOME_CONNECT_ERRORS).map(([code, e]) => `| \`${code}\` | ${e.message} |`),
  ].join("\n");
}

describe("DOCS.md error codes", () => {
  const BEGIN = /<!-- errors:begin[^>]*-->\n/;
  const END = "<!-- errors:end -->";

  it("match src/errors.ts (UPDATE_DOCS=1 regenerates them)", () => {
    const begin = BEGIN.exec(docs);
    const end = docs.indexOf(END);
    expect(begin, "DOCS.md lacks the errors:begin marker").not.toBeNull();
    const current = docs.slice(begin!.index + begin![0].length, end).trim();
    const expected = renderErrors();
    if (process.env.UPDATE_DOCS === "1" && current !== expected) {
      writeFileSync(
        join(root, "DOCS.md"),
        docs.slice(0, begin!.index + begin![0].length) + `${expected}\n` + docs.slice(end),
      );
      return;
    }
    expect(current).toBe(expected);
  });

  it("document every code", () => {
    const section = docsSection("Error codes");
    const codes = [
      ...Object.keys(SATELLITE_ERRORS),
      ...Object.keys(API_ERRORS),
      ...Object.keys(WYOMING_ERRORS),
      ...Object.keys(ESPHOME_VOICE_ERRORS),
      ...Object.keys(ESPHOME_CONNECT_ERRORS),
    ];
    expect(codes.filter((c) => !section.includes(`\`${c}\``))).toEqual([]);
  });
});

describe("Dockerfile and run.sh", () => {
  const dockerfile = read("Dockerfile");
  const runSh = read("run.sh");

  it("builds from the Home Assistant base with Node from Alpine and a healthcheck on /healthz", () => {
    expect(dockerfile.split("\n")[0]).toBe("ARG BUILD_FROM=ghcr.io/home-assistant/base:3.24");
    expect(dockerfile.match(/^FROM \$\{BUILD_FROM\}/gm)?.length).toBe(2);
    expect(dockerfile).toMatch(/HEALTHCHECK[\s\S]*http:\/\/127\.0\.0\.1:8765\/healthz/);
    expect(dockerfile).toContain('CMD ["/run.sh"]');
    // the bundle and the ingress UI files it serves (dist/ui, copied there by build.ts)
    expect(dockerfile).toMatch(/^COPY --from=build \/build\/dist \.\/dist$/m);
    expect(dockerfile).toMatch(/^COPY tsconfig\.json tsconfig\.build\.json build\.ts \.\/$/m);
  });

  it("copies into the build stage every file of ours that build.ts imports", () => {
    const build = dockerfile.slice(0, dockerfile.lastIndexOf("\nFROM "));
    const copied = [...build.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(" "));
    const imported = [...read("build.ts").matchAll(/from "\.\/([^"]+)\.js"/g)].map((m) => `${m[1]!}.ts`);
    expect(imported).toContain("scripts/eager-wrappers.ts");
    const covered = (file: string) => copied.some((c) => c === file || file.startsWith(`${c}/`));
    expect(imported.filter((f) => !covered(f))).toEqual([]);
  });

  it("fails the image build when Alpine's Node is older than 24", () => {
    const check = /^RUN node -e '(.*)'$/m.exec(runtime)?.[1];
    expect(check).toBeDefined();
    const run = (version: string) =>
      spawnSync(
        process.execPath,
        ["-e", `Object.defineProperty(process.versions, "node", { value: "${version}" }); ${check}`],
        {
          encoding: "utf8",
        },
      );
    expect(run("22.20.0").status).toBe(1);
    expect(run("22.20.0").stderr).toContain("older than 24");
    expect(run("24.11.1").status).toBe(0);
  });

  it("runs Node with a small young generation, in the one line bench/service.ts reads", () => {
    expect(dockerfile.match(/^ENV NODE_OPTIONS="--max-semi-space-size=\d+"$/gm)?.length).toBe(1);
  });

  it("run.sh uses bashio and execs node", () => {
    expect(runSh.split("\n")[0]).toBe("#!/usr/bin/with-contenv bashio");
    expect(runSh).toMatch(/^exec node \/app\/dist\/main\.js --options \/data\/options\.json$/m);
    expect(runSh).not.toMatch(/config\.(ya?ml|json)/);
  });

  /** The runtime stage: everything after the last FROM. */
  const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  /** `KEY=value` pairs of the runtime stage's ENV and LABEL instructions (continuation lines joined). */
  const pairs = (instruction: "ENV" | "LABEL"): Record<string, string> => {
    const out: Record<string, string> = {};
    const joined = runtime.replaceAll(/\\\n\s*/g, " ");
    for (const line of joined.split("\n").filter((l) => l.startsWith(`${instruction} `)))
      for (const m of line.matchAll(/([\w.]+)=("[^"]*"|\S+)/g)) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1");
    return out;
  };

  it("ships the commands DOCS.md tells users to run: node, npx, uvx and python3", () => {
    expect(runtime).toMatch(/^RUN apk add --no-cache nodejs npm python3 uv$/m);
    for (const command of ["npx", "uvx"]) expect(docs).toContain(`command: ${command}`);
  });

  it("keeps the npx and uvx caches under /data, and passes them to stdio servers", () => {
    const env = pairs("ENV");
    const caches = ["npm_config_cache", "UV_CACHE_DIR", "UV_TOOL_DIR", "UV_PYTHON_INSTALL_DIR"];
    for (const name of caches) expect(env[name], name).toMatch(/^\/data\//);
    // A stdio child only inherits allow-listed variables: without these it would download again.
    expect(caches.filter((k) => !(INHERITED_ENV as readonly string[]).includes(k))).toEqual([]);
  });

  it("labels the image io.hass.* like config.yaml", () => {
    const labels = pairs("LABEL");
    expect(labels).toMatchObject({
      "io.hass.type": "addon",
      "io.hass.name": manifest.name,
      "io.hass.description": String(manifest.description).trim(),
      "io.hass.url": manifest.url,
      "io.hass.arch": "${BUILD_ARCH}",
      "io.hass.version": "${BUILD_VERSION}",
    });
    expect(runtime).toContain(`ARG BUILD_VERSION=${String(manifest.version)}`);
  });

  it.skipIf(lacks("shellcheck", "shellcheck of the shell scripts"))(
    "every shell script passes shellcheck",
    () => {
      const scripts = ["run.sh", ".ci/run", "test/fixtures/audio/regenerate.sh"];
      const r = spawnSync("shellcheck", ["-s", "bash", ...scripts], { cwd: root, encoding: "utf8" });
      expect(r.stdout + r.stderr).toBe("");
      expect(r.status).toBe(0);
      // .ci/run checks the same list.
      expect(read(".ci/run")).toContain(`shellcheck -s bash ${scripts.join(" ")}`);
    },
  );
});

/** Width and height of a PNG, from its IHDR chunk. */
function pngSize(path: string): { width: number; height: number } {
  const png = readFileSync(join(root, path));
  expect(png.subarray(1, 4).toString("latin1"), `${path} is a PNG`).toBe("PNG");
  expect(png.subarray(12, 16).toString("latin1")).toBe("IHDR");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe("store presentation and Home Assistant conventions", () => {
  const repository = parse(read("repository.yaml")) as Yaml;

  it("has icon.png (128x128) and logo.png", () => {
    expect(pngSize("icon.png")).toEqual({ width: 128, height: 128 });
    const logo = pngSize("logo.png");
    expect(logo.width).toBeGreaterThanOrEqual(128);
    expect(logo.height).toBeGreaterThanOrEqual(64);
  });

  it("names the same project url in config.yaml and repository.yaml", () => {
    expect(manifest.url).toMatch(/^https:\/\/github\.com\/[\w.-]+\/[\w.-]+$/);
    expect(repository.url).toBe(manifest.url);
    expect(read("DEVELOPMENT.md")).toContain(String(manifest.url));
  });

  it("asks for the OpenAI key: no default, so the Supervisor refuses to start without it", () => {
    const schema = manifest.schema as { openai: Record<string, string> };
    const options = manifest.options as { openai: Record<string, unknown> };
    expect(schema.openai.api_key).toBe("password");
    expect(options.openai).not.toHaveProperty("api_key");
  });

  const workflow = parse(read(".github/workflows/builder.yaml")) as {
    env: { ARCHITECTURES: string; IMAGE_NAME: string };
    jobs: Record<string, { steps: { uses?: string; with?: Record<string, unknown> }[] }>;
  };
  const uses = Object.values(workflow.jobs).flatMap((j) => j.steps.map((s) => s.uses ?? ""));

  it("builds pre-built images for config.yaml's architectures with Home Assistant's builder", () => {
    expect((JSON.parse(workflow.env.ARCHITECTURES) as string[]).sort()).toEqual(
      [...(manifest.arch as string[])].sort(),
    );
    const builder = uses.filter((u) => u.startsWith("home-assistant/builder/actions/"));
    expect(builder.map((u) => u.replace(/@.*$/, "")).sort()).toEqual([
      "home-assistant/builder/actions/build-image",
      "home-assistant/builder/actions/prepare-multi-arch-matrix",
      "home-assistant/builder/actions/publish-multi-arch-manifest",
    ]);
    // One pinned release of the builder for all three.
    expect(new Set(builder.map((u) => u.replace(/^.*@/, ""))).size).toBe(1);
  });

  it("documents image: as the way to publish; when set, it names the images the workflow pushes", () => {
    const image = `ghcr.io/<owner>/{arch}-${workflow.env.IMAGE_NAME}`;
    expect(read("DEVELOPMENT.md")).toContain(`image: ${image}`);
    // Unset, the Supervisor builds the image on the device; set, it pulls instead.
    if ("image" in manifest)
      expect(manifest.image).toMatch(
        new RegExp(`^ghcr\\.io/[\\w.-]+/\\{arch\\}-${workflow.env.IMAGE_NAME}$`),
      );
  });

  const apparmor = read("apparmor.txt");
  it("has an AppArmor profile named after the slug, confining node and the stdio servers", () => {
    expect(apparmor).toMatch(new RegExp(`^profile ${String(manifest.slug)} flags=\\(`, "m"));
    expect(apparmor).toMatch(/^\s*\/usr\/bin\/node cx -> openvoice,$/m);
    for (const rule of ["/data/** rwk", "/config/** r", "network inet stream", "/usr/bin/uvx mrix"])
      expect(apparmor).toContain(rule);
    expect(manifest).not.toHaveProperty("apparmor");
  });

  it.skipIf(lacks("apparmor_parser", "apparmor_parser of apparmor.txt"))(
    "apparmor.txt parses with apparmor_parser",
    () => {
      const r = spawnSync("apparmor_parser", ["--skip-kernel-load", "--skip-cache", "apparmor.txt"], {
        cwd: root,
        encoding: "utf8",
      });
      expect(r.stderr.replace(/^Cache read\/write disabled.*\n?/m, "")).toBe("");
      expect(r.status).toBe(0);
    },
  );
});
