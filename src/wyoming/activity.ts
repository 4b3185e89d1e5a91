/**
 * What the Wyoming service is doing, for the ingress status page and the metrics: whether it listens,
 * how many connections are open, and the last turns of each program with their stage timings.
 *
 * The server opens one `WyomingTurn` per program call and hands it to the program; the program reports
 * its stage timings and its outcome into it. A turn the program never finishes is finished by the
 * server when the connection closes (`abandoned`), so every call is counted exactly once.
 */
import type { Metrics } from "../metrics.js";

export const WYOMING_PROGRAMS = ["asr", "handle", "tts"] as const;
export type WyomingProgramKind = (typeof WYOMING_PROGRAMS)[number];

/**
 * Latency stages: `transcript` end of speech → transcript sent; `handled` transcript received →
 * handled sent; `first_audio` synthesize received → first audio-chunk sent.
 */
export const WYOMING_STAGES = ["transcript", "handled", "first_audio"] as const;
export type WyomingStage = (typeof WYOMING_STAGES)[number];

/**
 * `requests_total{outcome}`: `success` answered; `error` a Wyoming error was sent; `not_supported` the
 * program is not available; `abandoned` the client closed (or the service stopped) before an answer.
 */
export const WYOMING_OUTCOMES = ["success", "error", "not_supported", "abandoned"] as const;
export type WyomingOutcome = (typeof WYOMING_OUTCOMES)[number];

/** One program call as the status page shows it. No texts: transcripts stay out of the status API. */
export interface WyomingTurnRecord {
  readonly program: WyomingProgramKind;
  /** Connection id, e.g. `w7`. */
  readonly connection: string;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly stages: Partial<Record<WyomingStage, number>>;
  /** Absent while the call runs. */
  readonly outcome?: WyomingOutcome;
  /** Whole call, ms; absent while it runs. */
  readonly durationMs?: number;
}

/** One program call's report handle. */
export interface WyomingTurn {
  readonly program: WyomingProgramKind;
  /** Records a stage latency in seconds (first report per stage wins; later ones are ignored). */
  stage(stage: WyomingStage, seconds: number): void;
  /** Ends the turn with its outcome. Idempotent: only the first call counts. */
  finish(outcome: WyomingOutcome): void;
  readonly finished: boolean;
}

export interface WyomingActivitySnapshot {
  readonly enabled: boolean;
  readonly listening: boolean;
  readonly port?: number;
  readonly connections: number;
  /** Newest first. */
  readonly turns: readonly WyomingTurnRecord[];
}

export interface WyomingActivityOptions {
  readonly metrics?: Metrics;
  readonly enabled?: boolean;
  /** Turns kept for the status page. Default 20. */
  readonly keep?: number;
  /** Epoch ms clock (tests). */
  readonly now?: () => number;
}

export class WyomingActivity {
  readonly #metrics: Metrics | undefined;
  readonly #keep: number;
  readonly #now: () => number;
  readonly #enabled: boolean;
  #turns: { record: WyomingTurnRecord; stages: Partial<Record<WyomingStage, number>> }[] = [];
  #connections = 0;
  #port: number | undefined;

  constructor(opts: WyomingActivityOptions = {}) {
    this.#metrics = opts.metrics;
    this.#keep = opts.keep ?? 20;
    this.#now = opts.now ?? Date.now;
    this.#enabled = opts.enabled ?? true;
    if (this.#metrics) {
      this.#metrics.wyomingConnections.set(0);
      for (const program of WYOMING_PROGRAMS)
        for (const outcome of WYOMING_OUTCOMES) this.#metrics.wyomingRequests.inc({ program, outcome }, 0);
      for (const stage of WYOMING_STAGES) this.#metrics.wyomingStageSeconds.zero({ stage });
    }
  }

  /** The server bound its port (`undefined`: it stopped listening). */
  listening(port: number | undefined): void {
    this.#port = port;
  }

  connectionOpened(): void {
    this.#connections++;
    this.#metrics?.wyomingConnections.set(this.#connections);
  }

  connectionClosed(): void {
    this.#connections = Math.max(0, this.#connections - 1);
    this.#metrics?.wyomingConnections.set(this.#connections);
  }

  /** Starts recording one program call. */
  begin(program: WyomingProgramKind, connection: string): WyomingTurn {
    const startedAt = this.#now();
    const stages: Partial<Record<WyomingStage, number>> = {};
    const entry = { record: { program, connection, startedAt, stages } as WyomingTurnRecord, stages };
    this.#turns.unshift(entry);
    if (this.#turns.length > this.#keep) this.#turns.length = this.#keep;
    let finished = false;
    return {
      program,
      stage: (stage, seconds) => {
        if (stages[stage] !== undefined || !Number.isFinite(seconds) || seconds < 0) return;
        stages[stage] = Math.round(seconds * 1000);
        this.#metrics?.wyomingStageSeconds.observe({ stage }, seconds);
      },
      finish: (outcome) => {
        if (finished) return;
        finished = true;
        entry.record = { ...entry.record, outcome, durationMs: this.#now() - startedAt };
        this.#metrics?.wyomingRequests.inc({ program, outcome });
      },
      get finished() {
        return finished;
      },
    };
  }

  snapshot(): WyomingActivitySnapshot {
    return {
      enabled: this.#enabled,
      listening: this.#port !== undefined,
      ...(this.#port === undefined ? {} : { port: this.#port }),
      connections: this.#connections,
      turns: this.#turns.map((t) => ({ ...t.record, stages: { ...t.stages } })),
    };
  }
}
