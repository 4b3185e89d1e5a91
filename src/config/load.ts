/**
 * The configuration loader: one validated `Config` from either source.
 *
 * - `yaml`: the seed's YAML shape (`--config FILE.yaml` / `OPENVOICE_CONFIG`), with `${VAR}` substitution;
 * - `options`: the add-on's `/data/options.json` as the Supervisor writes it (no substitution).
 *
 * Never throws for bad input: every problem comes back with the display path of the option it is
 * about; unknown keys and deprecations are warnings (the keys are ignored), except a top-level section
 * indented under another one, which is an error (ignoring it would silently drop it). YAML syntax
 * errors carry their line and column; a duplicated key is named by its option path.
 */
import { readFile } from "node:fs/promises";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { ConfigSchema, type Config } from "./model.js";
import { normalizeConfig, type ConfigForm, type Finding } from "./normalize.js";
import { displayPath, type ConfigProblem, type PathSegment } from "./problems.js";
import { substituteEnv } from "./substitute.js";
import { yamlProblems } from "./yaml-problems.js";

export type { ConfigForm } from "./normalize.js";

export interface ConfigSource {
  readonly form: ConfigForm;
  readonly path: string;
}

export type LoadResult =
  | { readonly ok: true; readonly config: Config; readonly warnings: readonly ConfigProblem[] }
  | {
      readonly ok: false;
      readonly problems: readonly ConfigProblem[];
      readonly warnings: readonly ConfigProblem[];
    };

export type Env = Readonly<Record<string, string | undefined>>;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Strips wrappers that do not change which keys an object accepts. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/** The top-level sections (`openai`, `mcp_servers`, ...): indented under another key they are a mistake. */
const TOP_LEVEL_KEYS: ReadonlySet<string> = new Set(Object.keys(ConfigSchema.shape));

interface KeyFindings {
  /** Keys the schema does not know: ignored, with a warning. */
  readonly unknown: Finding[];
  /** Top-level sections found inside another block: an error, since ignoring them would drop them. */
  readonly misplaced: Finding[];
}

/** Reports keys the schema does not know, with a suggestion when one is close. */
function findUnknownKeys(value: unknown, schema: z.ZodType, path: PathSegment[], out: KeyFindings): void {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject && isRecord(value)) {
    const shape = s.shape as Record<string, z.ZodType>;
    const known = Object.keys(shape);
    for (const [k, v] of Object.entries(value)) {
      const child = shape[k];
      if (child !== undefined) {
        findUnknownKeys(v, child, [...path, k], out);
        continue;
      }
      if (path.length > 0 && TOP_LEVEL_KEYS.has(k)) {
        out.misplaced.push({
          path: [...path, k],
          message: `${k} is a top-level section but is indented under ${String(path[0])}; move it to the start of the line`,
        });
        continue;
      }
      const close = known.find((n) => editDistance(n, k) <= 2);
      out.unknown.push({
        path: [...path, k],
        message: `unknown key, ignored${close ? ` (did you mean ${close}?)` : ""}`,
      });
    }
  } else if (s instanceof z.ZodArray && Array.isArray(value)) {
    value.forEach((v, i) => findUnknownKeys(v, s.element as z.ZodType, [...path, i], out));
  }
}

/** Messages for people: a missing value is "required", a bad approval policy says what is allowed. */
const messages: z.core.$ZodErrorMap = (iss) => {
  if (iss.input === undefined && iss.code === "invalid_type") return "required";
  if (iss.code === "invalid_union" && iss.path?.at(-1) === "require_approval")
    return "expected always, never or a map {tool: always|never}";
  if (iss.path?.join(".") === "openai.base_url" && typeof iss.input === "string") {
    const scheme = /^(https?):\/\//i.exec(iss.input)?.[1];
    if (scheme !== undefined)
      return `use wss:// (ws:// for a local test server), not ${scheme.toLowerCase()}://: the Realtime API is a WebSocket, e.g. wss://api.openai.com/v1/realtime`;
  }
  return undefined;
};

function parseText(
  text: string,
  form: ConfigForm,
  name: string,
): { doc?: unknown; problems: ConfigProblem[] } {
  if (form === "options") {
    try {
      return { doc: JSON.parse(text) as unknown, problems: [] };
    } catch (e) {
      return { problems: [{ path: name, message: `not valid JSON: ${(e as Error).message}` }] };
    }
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter: lines });
  if (doc.errors.length > 0) return { problems: yamlProblems(doc, lines, name) };
  return { doc: doc.toJS() as unknown, problems: [] };
}

/**
 * Validates a configuration document given as text. `name` labels problems with the document itself
 * (usually the file path). Warnings are returned in both outcomes.
 */
export function parseConfig(text: string, form: ConfigForm, env: Env, name = "configuration"): LoadResult {
  const parsed = parseText(text, form, name);
  if (parsed.problems.length > 0) return { ok: false, problems: parsed.problems, warnings: [] };
  const doc = parsed.doc ?? {};
  if (!isRecord(doc))
    return { ok: false, problems: [{ path: name, message: "expected a mapping of options" }], warnings: [] };

  const normalized = normalizeConfig(doc, form, { addon: (env.SUPERVISOR_TOKEN ?? "") !== "" });
  const findings = [...normalized.problems];
  let value: unknown = normalized.value;
  if (form === "yaml") value = substituteEnv(value, env, findings);
  const keys: KeyFindings = { unknown: [], misplaced: [] };
  findUnknownKeys(value, ConfigSchema, [], keys);

  const show = (fs: readonly Finding[]): ConfigProblem[] =>
    fs.map((f) => ({ path: displayPath(f.path, value), message: f.message }));
  const warnings = [...show(normalized.warnings), ...show(keys.unknown)];

  const result = ConfigSchema.safeParse(value, { error: messages, jitless: true });
  const problems = [...show(findings), ...show(keys.misplaced)];
  if (!result.success) {
    for (const issue of result.error.issues)
      problems.push({ path: displayPath(issue.path as PathSegment[], value), message: issue.message });
  }
  if (problems.length > 0 || !result.success) return { ok: false, problems: dedupe(problems), warnings };
  return { ok: true, config: result.data, warnings };
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\u0000${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Reads and validates a configuration file. An unreadable file is a problem, not an exception. */
export async function loadConfig(source: ConfigSource, env: Env): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(source.path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "file not found" : `cannot read the file (${code ?? (e as Error).message})`;
    return { ok: false, problems: [{ path: source.path, message: why }], warnings: [] };
  }
  return parseConfig(text, source.form, env, source.path);
}
