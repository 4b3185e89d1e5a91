/**
 * Reply bookkeeping of one satellite, without I/O: the replies in playback order (the head plays,
 * the others keep their 24 kHz audio until their turn), where each audio item starts inside its
 * reply (to truncate at what was heard), and a bounded memory of replies that ended here so their
 * late audio is ignored.
 */
import type { ResponseEndReason } from "../realtime/conversation.js";

export interface Reply {
  readonly id: string;
  /** This reply's audio is being pushed to the pacer (it is the head of the queue). */
  playing: boolean;
  /** Milliseconds of this reply pushed to the pacer so far. */
  pushedMs: number;
  /** Audio items of this reply and where each starts in the reply (ms), for `played`. */
  readonly itemStarts: Map<string, number>;
  /** Upstream said the response ended; with `done` the reply ends once its audio is sent. */
  upstreamEnd: ResponseEndReason | null;
  /** `end()` was called on the pacer for this reply; the next drain ends it. */
  finishing: boolean;
  /** 24 kHz audio received before this reply's turn to play (a previous reply is still playing). */
  waiting: { itemId: string; pcm: Buffer }[];
  waitingBytes: number;
}

/** What a stop must tell the upstream, read before the replies are dropped. */
export interface StopSnapshot {
  /** Where the item at the play head starts in its reply (ms); null when it is not known here. */
  headStartMs: number | null;
  /** Items sent or waiting that nobody heard (each once, in reply order). */
  unheard: string[];
  /** At least one reply has no upstream end yet. */
  responseInFlight: boolean;
}

/** Replies whose audio is ignored (stopped by barge-in/cancel); bounded. */
export const STOPPED_MEMORY = 16;

export class ReplyBook {
  #replies: Reply[] = [];
  readonly #ended: string[] = [];

  /** Replies not yet ended. */
  get size(): number {
    return this.#replies.length;
  }

  /** The reply playing, if any. */
  get head(): Reply | undefined {
    return this.#replies[0];
  }

  get(id: string): Reply | undefined {
    return this.#replies.find((r) => r.id === id);
  }

  /** The reply ended here (among the last {@link STOPPED_MEMORY}): its late events are ignored. */
  ended(id: string): boolean {
    return this.#ended.includes(id);
  }

  /** Adds a reply at the end of the queue; `undefined` when it is known or has ended already. */
  start(id: string): Reply | undefined {
    if (this.get(id) !== undefined || this.ended(id)) return undefined;
    const reply: Reply = {
      id,
      playing: this.#replies.length === 0,
      pushedMs: 0,
      itemStarts: new Map(),
      upstreamEnd: null,
      finishing: false,
      waiting: [],
      waitingBytes: 0,
    };
    this.#replies.push(reply);
    return reply;
  }

  /** Keeps audio of a reply that waits its turn; false (dropped) beyond `maxBytes` for the reply. */
  hold(reply: Reply, itemId: string, pcm: Buffer, maxBytes: number): boolean {
    if (reply.waitingBytes + pcm.byteLength > maxBytes) return false;
    reply.waiting.push({ itemId, pcm });
    reply.waitingBytes += pcm.byteLength;
    return true;
  }

  /** Ends one reply (remembered as ended); false when it had ended already. */
  end(reply: Reply): boolean {
    const idx = this.#replies.indexOf(reply);
    if (idx < 0) return false;
    this.#replies.splice(idx, 1);
    this.#remember(reply.id);
    return true;
  }

  /**
   * Makes the new head play when it was waiting: returns it with its held audio (taken out of the
   * reply), or `undefined` when there is no head or it already plays.
   */
  promote(): { reply: Reply; held: { itemId: string; pcm: Buffer }[] } | undefined {
    const next = this.#replies[0];
    if (next === undefined || next.playing) return undefined;
    next.playing = true;
    const held = next.waiting.splice(0);
    next.waitingBytes = 0;
    return { reply: next, held };
  }

  /** Ends every reply (each remembered as ended) and returns them in playback order. */
  endAll(): Reply[] {
    const replies = this.#replies;
    this.#replies = [];
    for (const reply of replies) this.#remember(reply.id);
    return replies;
  }

  /** Forgets every reply without remembering them (the satellite is gone). */
  drop(): void {
    this.#replies = [];
  }

  /** What a stop at `headItemId` (the pacer's play head, if any) must truncate upstream. */
  snapshot(headItemId: string | undefined): StopSnapshot {
    let headStartMs: number | null = null;
    const unheard: string[] = [];
    let responseInFlight = false;
    for (const reply of this.#replies) {
      for (const [itemId, startMs] of reply.itemStarts)
        if (itemId === headItemId) headStartMs = startMs;
        else unheard.push(itemId);
      for (const w of reply.waiting) if (!unheard.includes(w.itemId)) unheard.push(w.itemId);
      if (reply.upstreamEnd === null) responseInFlight = true;
    }
    return { headStartMs, unheard, responseInFlight };
  }

  #remember(id: string): void {
    this.#ended.push(id);
    if (this.#ended.length > STOPPED_MEMORY) this.#ended.shift();
  }
}
