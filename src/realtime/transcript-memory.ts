/**
 * What a conversation remembers to carry into its next session: the recent final transcripts, and of
 * the recent reply items how much audio each had, so that a barge-in keeps only the part of a reply that
 * was heard. Pure apart from the clock; `S` is whatever owns an item (its upstream session).
 */
import { summariseTurns, type TranscriptTurn } from "./session-config.js";

const HISTORY_TURNS = 12;
/** Reply items whose audio length is remembered (for barge-in trimming and retirement). */
const TRACKED_ITEMS = 8;
const PCM_BYTES_PER_MS = 48; // PCM16 mono at 24 kHz

/** Audio received for one reply item: how long it is, when it began, and its transcript turn. */
interface ReplyItem<S> {
  readonly owner: S;
  readonly firstAt: number;
  ms: number;
  turn?: TranscriptTurn;
}

export class TranscriptMemory<S> {
  readonly #now: () => number;
  readonly #history: TranscriptTurn[] = [];
  /** Recent reply items by id, oldest first. */
  readonly #items = new Map<string, ReplyItem<S>>();
  #lastAudioItem: string | null = null;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** Final transcripts kept for carry-over (at most 12), oldest first. */
  get history(): readonly TranscriptTurn[] {
    return this.#history;
  }

  /** The summary a new session is given, or undefined when there is nothing to carry. */
  context(): string | undefined {
    return summariseTurns(this.#history) || undefined;
  }

  /** Who received reply item `itemId`, while it is among the recent ones. */
  ownerOf(itemId: string): S | undefined {
    return this.#items.get(itemId)?.owner;
  }

  /** `bytes` of reply audio (PCM16 24 kHz) for `itemId` from `owner`. */
  noteAudio(owner: S, itemId: string, bytes: number): void {
    let item = this.#items.get(itemId);
    if (!item) {
      item = { owner, firstAt: this.#now(), ms: 0 };
      this.#items.set(itemId, item);
      for (const old of this.#items.keys()) {
        if (this.#items.size <= TRACKED_ITEMS) break;
        this.#items.delete(old);
      }
    }
    item.ms += bytes / PCM_BYTES_PER_MS;
    this.#lastAudioItem = itemId;
  }

  /** A final transcript; an assistant one belongs to the reply item that last had audio. Blank ones are not kept. */
  remember(role: TranscriptTurn["role"], text: string): void {
    if (!text.trim()) return;
    const turn: TranscriptTurn = { role, text };
    const itemId = role === "assistant" ? this.#lastAudioItem : null;
    const item = itemId !== null ? this.#items.get(itemId) : undefined;
    if (item && !item.turn) item.turn = turn;
    this.#history.push(turn);
    this.#keepRecent();
  }

  /** Earlier turns (from a previous conversation) before the ones kept. */
  prepend(turns: readonly TranscriptTurn[]): void {
    this.#history.unshift(...turns);
    this.#keepRecent();
  }

  /** Cuts the item's transcript in the history to the share that was played. True when it changed. */
  trimHeard(itemId: string, audioEndMs: number): boolean {
    const item = this.#items.get(itemId);
    const turn = item?.turn;
    if (!item || !turn || item.ms <= 0) return false;
    const i = this.#history.indexOf(turn);
    if (i < 0) return false;
    const heard = heardPart(turn.text, Math.min(1, Math.max(0, audioEndMs / item.ms)));
    if (heard === turn.text) return false;
    const cut: TranscriptTurn = { role: turn.role, text: heard };
    if (heard) this.#history.splice(i, 1, cut);
    else this.#history.splice(i, 1);
    item.turn = cut;
    return true;
  }

  /** How long `owner`'s last reply may still be playing (ms, ≤ 0 when done or not `owner`'s). */
  playingFor(owner: S): number {
    const last = this.#lastAudioItem !== null ? this.#items.get(this.#lastAudioItem) : undefined;
    return last?.owner === owner ? last.firstAt + last.ms - this.#now() : 0;
  }

  #keepRecent(): void {
    if (this.#history.length > HISTORY_TURNS) this.#history.splice(0, this.#history.length - HISTORY_TURNS);
  }
}

/** The first `share` of `text`'s words, with an ellipsis when cut; "" when nothing was heard. */
export function heardPart(text: string, share: number): string {
  const words = text.trim().split(/\s+/);
  const n = Math.floor(words.length * share);
  if (n >= words.length) return text;
  if (n === 0) return "";
  return `${words.slice(0, n).join(" ")}…`;
}
