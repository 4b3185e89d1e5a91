/**
 * The reply base URL from the option, or from a fake Supervisor on loopback (network info and the add-on's
 * port map, with realistic shapes), or none with the reason.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { hostLanAddress, mappedHostPort, resolveReplyBaseUrl } from "../../src/esphome/reply-url.js";
import { startFakeSupervisor, type FakeSupervisor } from "../fixtures/supervisor/fake-supervisor.js";

const TOKEN = "supervisor-token-reply-url";

/** What `GET /network/info` returns on a host with docker's bridge, a Wi-Fi that is down and wired LAN. */
const NETWORK_INFO = {
  interfaces: [
    {
      interface: "wlan0",
      type: "wireless",
      enabled: false,
      connected: false,
      primary: false,
      ipv4: { method: "disabled", address: [], nameservers: [], gateway: null, ready: false },
      ipv6: { method: "disabled", address: [], nameservers: [], gateway: null, ready: false },
      wifi: null,
      vlan: null,
    },
    {
      interface: "end0",
      type: "ethernet",
      enabled: true,
      connected: true,
      primary: true,
      ipv4: {
        method: "auto",
        address: ["192.168.1.5/24"],
        nameservers: ["192.168.1.1"],
        gateway: "192.168.1.1",
        ready: true,
      },
      ipv6: { method: "auto", address: ["fe80::1c2d:3eff:fe4f:5a6b/64"], nameservers: [], gateway: null },
      wifi: null,
      vlan: null,
    },
  ],
  docker: { interface: "hassio", address: "172.30.32.0/23", gateway: "172.30.32.1", dns: "172.30.32.3" },
  host_internet: true,
  supervisor_internet: true,
};

const ADDON_INFO = {
  name: "OpenVoice MCP",
  slug: "openvoice_mcp",
  hostname: "local-openvoice-mcp",
  ip_address: "172.30.33.4",
  host_network: false,
  network: { "8765/tcp": 18765, "10300/tcp": null, "8080/tcp": 8080 },
  network_description: { "8765/tcp": "Satellite WebSocket" },
};

describe("reply base URL", () => {
  let sup: FakeSupervisor | undefined;
  afterEach(async () => {
    await sup?.close();
    sup = undefined;
  });

  it("uses esphome.reply_base_url as given, without a trailing slash", async () => {
    expect(
      await resolveReplyBaseUrl({ option: "http://10.0.0.2:9000/", env: {}, satellitePort: 8765 }),
    ).toEqual({ url: "http://10.0.0.2:9000", source: "option" });
  });

  it("as an add-on: the primary interface's IPv4 address and the host port mapped to 8765", async () => {
    sup = await startFakeSupervisor({ token: TOKEN, networkInfo: NETWORK_INFO, addonInfo: ADDON_INFO });
    const r = await resolveReplyBaseUrl({
      env: { SUPERVISOR_TOKEN: TOKEN, OPENVOICE_SUPERVISOR_URL: sup.url },
      satellitePort: 8765,
    });
    expect(r).toEqual({ url: "http://192.168.1.5:18765", source: "supervisor" });
    expect(sup.requests.map((q) => `${q.method} ${q.path} ${q.status}`).sort()).toEqual([
      "GET /addons/self/info 200",
      "GET /network/info 200",
    ]);
  });

  it("says why when the port is not mapped, the token is refused, or there is no Supervisor", async () => {
    sup = await startFakeSupervisor({
      token: TOKEN,
      networkInfo: NETWORK_INFO,
      addonInfo: { ...ADDON_INFO, network: { "8765/tcp": null } },
    });
    const env = { SUPERVISOR_TOKEN: TOKEN, OPENVOICE_SUPERVISOR_URL: sup.url };
    expect(await resolveReplyBaseUrl({ env, satellitePort: 8765 })).toEqual({
      url: null,
      reason: "port 8765/tcp is not mapped to a host port (the add-on's Network settings)",
    });
    const refused = await resolveReplyBaseUrl({
      env: { ...env, SUPERVISOR_TOKEN: "wrong" },
      satellitePort: 8765,
    });
    expect(refused).toEqual({
      url: null,
      reason: "the host's address is unknown: the Supervisor answered /network/info with HTTP 401",
    });
    expect(await resolveReplyBaseUrl({ env: {}, satellitePort: 8765 })).toEqual({
      url: null,
      reason: expect.stringMatching(/^not running as a Home Assistant add-on: set esphome\.reply_base_url/),
    });
  });

  it("says why when the Supervisor cannot be reached", async () => {
    const http = createServer();
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    const { port } = http.address() as AddressInfo;
    await new Promise<void>((r) => http.close(() => r())); // nothing listens there now
    const r = await resolveReplyBaseUrl({
      env: { SUPERVISOR_TOKEN: TOKEN, OPENVOICE_SUPERVISOR_URL: `http://127.0.0.1:${port}` },
      satellitePort: 8765,
    });
    expect(r).toEqual({
      url: null,
      reason: "the host's address is unknown: cannot reach the Supervisor for /network/info (ECONNREFUSED)",
    });
  });

  it("host networking keeps the container port; no connected IPv4 interface is a reason", () => {
    expect(mappedHostPort({ host_network: true, network: null }, 8765)).toEqual({ port: 8765 });
    expect(hostLanAddress({ interfaces: [NETWORK_INFO.interfaces[0]] })).toEqual({
      reason: "the host has no connected network interface with an IPv4 address",
    });
    expect(hostLanAddress({ nope: 1 })).toEqual({
      reason: "the Supervisor's network information has an unexpected shape",
    });
  });
});
