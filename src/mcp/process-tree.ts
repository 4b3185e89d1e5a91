/**
 * Process-tree bookkeeping through `/proc` (Linux), so shutdown can make sure no descendant of a
 * stdio server survives, even one its command started (`npx`, `sh -c`, `uvx` …). On systems without
 * `/proc` every function here finds nothing and does nothing.
 */
import { readFileSync, readdirSync } from "node:fs";

/** A process identified by pid and start time, so a recycled pid is never mistaken for it. */
export interface ProcessRef {
  readonly pid: number;
  /** Field 22 of `/proc/<pid>/stat` (clock ticks since boot). */
  readonly startTime: string;
}

interface StatLine {
  readonly pid: number;
  readonly ppid: number;
  readonly state: string;
  readonly startTime: string;
}

/** Parses `/proc/<pid>/stat`; the command name may contain spaces and parentheses. */
function readStat(pid: number): StatLine | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(" ");
  // After the command: state(3) ppid(4) … starttime(22) → indexes 0, 1, 19.
  const state = fields[0];
  const ppid = Number(fields[1]);
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !Number.isInteger(ppid)) return null;
  return { pid, ppid, state, startTime };
}

function allStats(): StatLine[] {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return [];
  }
  const out: StatLine[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) out.push(stat);
  }
  return out;
}

/** `pid` and all its living descendants (zombies excluded), parents before children. */
export function processTree(pid: number): ProcessRef[] {
  const root = readStat(pid);
  if (!root || root.state === "Z") return [];
  const stats = allStats();
  const children = new Map<number, StatLine[]>();
  for (const s of stats) {
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  const out: ProcessRef[] = [];
  const queue: StatLine[] = [root];
  const seen = new Set<number>();
  for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
    if (seen.has(s.pid)) continue;
    seen.add(s.pid);
    if (s.state !== "Z") out.push({ pid: s.pid, startTime: s.startTime });
    queue.push(...(children.get(s.pid) ?? []));
  }
  return out;
}

/** Whether the process is still running (not exited, not a zombie, pid not reused). */
export function isAlive(ref: ProcessRef): boolean {
  const s = readStat(ref.pid);
  return s !== null && s.state !== "Z" && s.startTime === ref.startTime;
}

/** Sends SIGKILL to every process of `refs` still alive; returns how many were killed. */
export function killSurvivors(refs: readonly ProcessRef[]): number {
  let killed = 0;
  for (const ref of refs) {
    if (!isAlive(ref)) continue;
    try {
      process.kill(ref.pid, "SIGKILL");
      killed++;
    } catch {
      // Gone between the check and the signal.
    }
  }
  return killed;
}
