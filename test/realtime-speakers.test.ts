/** Speaker sessions, driven directly over recording fake sessions. */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { UsageSink } from "../src/cost/meter.js";
import type { SpeechOptions } from "../src/realtime/conversation.js";
import type { SessionState } from "../src/realtime/session.js";
import { MAX_SPEAKERS, Speakers, type SpeakerSession } from "../src/realtime/speakers.js";

/** Records what the speakers do with it; `speak` follows `script`. */
class FakeSpeaker extends EventEmitter {
  static n = 0;
  readonly id = `s${++FakeSpeaker.n}`;
  state: SessionState = "ready";
  usage: UsageSink | undefined;
  readonly log: string[] = [];
  script: (opts: SpeechOptions) => Promise<void> = (opts) => {
    opts.onAudio(Buffer.alloc(2));
    return Promise.resolve();
  };
  activate(): void {
    this.log.push("activate");
  }
  prepareSpeaker(voice: string): void {
    this.log.push(`voice ${voice}`);
  }
  speak(text: string, opts: SpeechOptions): Promise<void> {
    this.log.push(`speak ${text} in ${opts.voice ?? "?"}`);
    return this.script(opts);
  }
  close(code?: number, reason?: string): void {
    this.log.push(`close ${reason ?? code ?? ""}`);
    this.state = "closed";
    this.emit("closed");
  }
}

function rig() {
  const opened: FakeSpeaker[] = [];
  let closed = false;
  const sink: UsageSink = { response: () => undefined, transcription: () => undefined };
  const speakers = new Speakers<FakeSpeaker & SpeakerSession>({
    acquire: () => {
      const s = new FakeSpeaker() as FakeSpeaker & SpeakerSession;
      opened.push(s);
      return Promise.resolve(s);
    },
    account: () => sink,
    closed: () => closed,
    defaultVoice: "marin",
  });
  return { speakers, opened, sink, close: () => (closed = true) };
}

describe("Speakers", () => {
  it("one session per voice, prepared for speech and priced, reused until it closes", async () => {
    const { speakers, opened, sink } = rig();
    const heard: Buffer[] = [];
    await speakers.speak("Hi", { onAudio: (b) => heard.push(b) });
    await speakers.speak("Again", { onAudio: () => undefined });
    expect(opened).toHaveLength(1);
    expect(opened[0]?.log).toEqual(["activate", "voice marin", "speak Hi in marin", "speak Again in marin"]);
    expect(opened[0]?.usage).toBe(sink);
    expect(heard).toHaveLength(1);
    opened[0]?.close(1000, "expired");
    await speakers.speak("Hi", { onAudio: () => undefined, voice: "marin" });
    expect(opened).toHaveLength(2);
  });

  it(`keeps at most ${MAX_SPEAKERS} voices, closing the oldest`, async () => {
    const { speakers, opened } = rig();
    for (const v of ["a", "b", "c", "d"]) await speakers.speaker(v);
    await new Promise((r) => setImmediate(r));
    expect(opened.map((s) => s.state)).toEqual(["closed", "ready", "ready", "ready"]);
    expect(opened[0]?.log.at(-1)).toBe("close speaker evicted");
  });

  it("tries once more on a new session when the speaker went away before any audio, not after", async () => {
    const { speakers, opened } = rig();
    await speakers.speaker("marin");
    const first = opened[0]!;
    first.script = () => {
      first.close(1001, "gone");
      return Promise.reject(new Error("the connection to the assistant ended"));
    };
    await speakers.speak("Hi", { onAudio: () => undefined });
    expect(opened).toHaveLength(2);

    const second = opened[1]!;
    second.script = (opts) => {
      opts.onAudio(Buffer.alloc(2));
      return Promise.reject(new Error("the connection to the assistant ended"));
    };
    await expect(speakers.speak("Hi", { onAudio: () => undefined })).rejects.toThrow("ended");
    // A refusal of the speech itself is not retried either.
    const { speakers: other, opened: others } = rig();
    await other.speaker("marin");
    others[0]!.script = () => Promise.reject(new Error("speech failed: no"));
    await expect(other.speak("Hi", { onAudio: () => undefined })).rejects.toThrow("speech failed");
    expect(others).toHaveLength(1);
  });

  it("refuses once the engine closed", async () => {
    const { speakers, close } = rig();
    close();
    await expect(speakers.speak("Hi", { onAudio: () => undefined })).rejects.toThrow("engine is closed");
  });
});
