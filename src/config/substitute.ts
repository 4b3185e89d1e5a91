/**
 * `${VAR}` substitution from the environment, applied to every string value of a configuration
 * (keys are never substituted). `$${...}` stands for a literal `${...}`. A reference to a variable
 * that is not set, or a malformed reference, is a problem that names both the option and the variable.
 * Substituted values are always strings.
 */
import type { PathSegment } from "./problems.js";

const REFERENCE = /\$(\$?)\{([^}]*)\}/g;
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface SubstitutionProblem {
  readonly path: readonly PathSegment[];
  readonly message: string;
}

function substituteString(
  s: string,
  env: Readonly<Record<string, string | undefined>>,
  path: readonly PathSegment[],
  problems: SubstitutionProblem[],
): string {
  if (!s.includes("${")) return s;
  return s.replace(REFERENCE, (whole, escape: string, name: string) => {
    if (escape === "$") return whole.slice(1);
    if (!VAR_NAME.test(name)) {
      problems.push({ path, message: `invalid variable reference "\${${name}}"` });
      return whole;
    }
    const value = env[name];
    if (value === undefined) {
      problems.push({ path, message: `environment variable ${name} is not set` });
      return whole;
    }
    return value;
  });
}

/** Returns a copy of `value` with every reference replaced; problems are appended to `problems`. */
export function substituteEnv(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
  problems: SubstitutionProblem[],
  path: readonly PathSegment[] = [],
): unknown {
  if (typeof value === "string") return substituteString(value, env, path, problems);
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, problems, [...path, i]));
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, problems, [...path, k]);
    return out;
  }
  return value;
}
