/**
 * Finding a stdio server's command the way its child would be started: on the child's PATH, or as
 * a path relative to the server's cwd; and the words used when it is missing.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { McpServerConfig } from "../src/config/model.js";
import { findCommand, missingCommandMessage, missingCommands } from "../src/mcp/command.js";
import { clientServer } from "./fixtures/mcp/helpers.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "openvoice-command-"));
  await mkdir(join(dir, "bin"));
  await writeFile(join(dir, "bin", "uvx"), "#!/bin/sh\n", { mode: 0o755 });
  await writeFile(join(dir, "bin", "notes"), "not a program\n", { mode: 0o644 });
  await mkdir(join(dir, "bin", "npx"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("findCommand", () => {
  it("finds an executable file on PATH, skipping empty entries and directories that lack it", () => {
    const path = ["", join(dir, "nowhere"), join(dir, "bin")].join(":");
    expect(findCommand("uvx", path, dir)).toBe(join(dir, "bin", "uvx"));
  });

  it("does not take a file without the execute bit, or a directory, for a command", () => {
    expect(findCommand("notes", join(dir, "bin"), dir)).toBeUndefined();
    expect(findCommand("npx", join(dir, "bin"), dir)).toBeUndefined();
    expect(findCommand("uvx", undefined, dir)).toBeUndefined();
  });

  it("resolves a command with a slash against the working directory, not PATH", () => {
    expect(findCommand("./bin/uvx", "", dir)).toBe(join(dir, "bin", "uvx"));
    expect(findCommand("bin/uvx", "", dir)).toBe(join(dir, "bin", "uvx"));
    expect(findCommand("./uvx", join(dir, "bin"), dir)).toBeUndefined();
    expect(findCommand(join(dir, "bin", "uvx"), "", "/")).toBe(join(dir, "bin", "uvx"));
  });
});

describe("missingCommands", () => {
  const servers = (): McpServerConfig[] => [
    clientServer({ name: "fs", transport: "stdio", command: "npx", args: ["-y", "x"] }),
    clientServer({ name: "git", transport: "stdio", command: "uvx" }),
    clientServer({ name: "web", transport: "http", server_url: "http://127.0.0.1:1/mcp" }),
    clientServer({ name: "local", transport: "stdio", command: "./uvx", cwd: join(dir, "bin") }),
  ];

  it("lists only stdio servers whose command is missing, with the child's PATH (config env wins)", () => {
    expect(missingCommands(servers(), { PATH: join(dir, "bin") }, false)).toEqual([
      { server: "fs", command: "npx", message: "command `npx` not found on PATH" },
    ]);
    const withEnv = [
      clientServer({ name: "fs", transport: "stdio", command: "uvx", env: { PATH: "/nowhere" } }),
    ];
    expect(missingCommands(withEnv, { PATH: join(dir, "bin") }, false)).toHaveLength(1);
  });

  it("speaks of the add-on image when running as an add-on", () => {
    expect(missingCommands(servers(), { PATH: "/nowhere" }, true).map((m) => m.message)).toEqual([
      missingCommandMessage("npx", true),
      missingCommandMessage("uvx", true),
    ]);
    expect(missingCommandMessage("uvx", true)).toMatch(/^command `uvx` not found in the add-on image/);
    expect(missingCommandMessage("/opt/x", false)).toBe(
      "command `/opt/x` does not exist or is not executable",
    );
  });
});
