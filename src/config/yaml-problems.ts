/**
 * Problems of a YAML document that did not parse, told so that a person can find them: every
 * syntax error with its line and column, and every duplicated key by its option path and the
 * lines it is set on (the parser itself only says "Map keys must be unique").
 */
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from "yaml";
import { displayPath, type ConfigProblem, type PathSegment } from "./problems.js";

const keyText = (key: unknown): string => (isScalar(key) ? String(key.value) : String(key));

function where(lines: LineCounter, offset: number): string {
  const { line, col } = lines.linePos(offset);
  return `line ${line}, column ${col}`;
}

/** Every key set twice in one mapping, anywhere in the tree, in document order. */
function duplicateKeys(
  node: Node | null | undefined,
  path: PathSegment[],
  lines: LineCounter,
  out: ConfigProblem[],
): void {
  if (isMap(node)) {
    const firstLine = new Map<string, number | undefined>();
    for (const pair of node.items) {
      const name = keyText(pair.key);
      const offset = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
      const line = offset === undefined ? undefined : lines.linePos(offset).line;
      if (firstLine.has(name)) {
        const first = firstLine.get(name);
        const seenOn = first !== undefined && line !== undefined ? ` (lines ${first} and ${line})` : "";
        out.push({
          path: displayPath([...path, name], undefined),
          message: `duplicate key: "${name}" is set twice in the same block${seenOn}; keep one`,
        });
      } else {
        firstLine.set(name, line);
      }
      duplicateKeys(pair.value as Node | null, [...path, name], lines, out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => duplicateKeys(item as Node | null, [...path, i], lines, out));
  }
}

/** The problems of a document that has parse errors; `name` labels problems that have no option path. */
export function yamlProblems(doc: Document, lines: LineCounter, name: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (doc.errors.some((e) => e.code === "DUPLICATE_KEY")) duplicateKeys(doc.contents, [], lines, problems);
  const duplicatesNamed = problems.length > 0;
  for (const e of doc.errors) {
    if (e.code === "DUPLICATE_KEY" && duplicatesNamed) continue;
    problems.push({ path: name, message: `not valid YAML at ${where(lines, e.pos[0])}: ${e.message}` });
  }
  return problems;
}
