/**
 * A Chromium for the browser tests. First match wins: `CHROMIUM_PATH`; Debian's
 * `chromium-headless-shell`, then `chromium`; else the headless shell that the `@sparticuz/chromium`
 * dev dependency carries inside its npm package (brotli-compressed, unpacked once to the temp folder
 * as `chromium`: nothing is downloaded). So `npm ci && npm test` runs the browser tests on a machine
 * without a system Chromium.
 */
import { existsSync } from "node:fs";
import sparticuz from "@sparticuz/chromium";

/** Where Debian installs its Chromium builds, the headless shell first. */
export const SYSTEM_CHROMIUM: readonly string[] = [
  "/usr/lib/chromium/chromium-headless-shell",
  "/usr/bin/chromium-headless-shell",
  "/usr/lib/chromium/chromium",
  "/usr/bin/chromium",
];

export interface FoundChromium {
  readonly executablePath: string;
  /** Where it came from: `CHROMIUM_PATH`, `system`, or `@sparticuz/chromium`. */
  readonly from: "CHROMIUM_PATH" | "system" | "@sparticuz/chromium";
}

export async function findChromium(
  system: readonly string[] = SYSTEM_CHROMIUM,
  env: NodeJS.ProcessEnv = process.env,
): Promise<FoundChromium> {
  const configured = env.CHROMIUM_PATH;
  if (configured !== undefined && configured !== "") {
    if (!existsSync(configured)) throw new Error(`CHROMIUM_PATH=${configured} does not exist`);
    return { executablePath: configured, from: "CHROMIUM_PATH" };
  }
  const installed = system.find((p) => existsSync(p));
  if (installed !== undefined) return { executablePath: installed, from: "system" };
  return { executablePath: await sparticuz.executablePath(), from: "@sparticuz/chromium" };
}

/**
 * Flags for every launch here: no sandbox (tests run as root in containers), no GPU, headless, and
 * nothing that reaches the network by itself (the tests run on a closed network).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-gpu",
  "--headless",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/**
 * The flags of a browser that talks on the talk page: a fake microphone playing `micWav` (PCM16 WAV)
 * with no permission prompt, and audio that plays without a click.
 */
export function talkPageArgs(micWav: string): string[] {
  return [
    ...CHROMIUM_ARGS,
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${micWav}`,
    "--autoplay-policy=no-user-gesture-required",
  ];
}
