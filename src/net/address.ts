/**
 * Peer addresses of accepted sockets: one normal form, and allow lists of addresses and subnets.
 * Pure (no I/O); `node:net`'s `BlockList` does the matching.
 */
import { BlockList, isIP, isIPv4, SocketAddress } from "node:net";

/**
 * One spelling per address, for configured addresses and socket peers alike: IPv4-mapped IPv6
 * (`::ffff:192.168.1.50`) becomes plain IPv4, and IPv6 takes its canonical form (RFC 5952: lower case,
 * leading zeros dropped, the longest run of zero groups as `::`), so `fd00:0::5` equals `fd00::5`.
 */
export function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return "";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIP(address) !== 6 || address.includes("%")) return address.toLowerCase();
  // The URL parser serialises an IPv6 host in the canonical form.
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** `192.168.1.20`, `fd00::5`, `192.168.1.0/24` or `fd00::/8`; null when it is none of these. */
export function parseAddressOrSubnet(
  entry: string,
): { address: string; prefix?: number; family: "ipv4" | "ipv6" } | null {
  const [address = "", prefixText, extra] = entry.trim().split("/");
  if (extra !== undefined) return null;
  const version = ipVersion(address);
  if (version === 0) return null;
  const family = version === 4 ? "ipv4" : "ipv6";
  if (prefixText === undefined) return { address, family };
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  if (prefix > (version === 4 ? 32 : 128)) return null;
  return { address, prefix, family };
}

/**
 * 4, 6, or 0 for neither. IPv6 is checked by the native parser behind `SocketAddress`: `isIPv6` compiles a
 * very large regular expression on its first call (about 3 ms, on the path to listening for `::1`).
 */
function ipVersion(address: string): 0 | 4 | 6 {
  if (isIPv4(address)) return 4;
  if (!address.includes(":")) return 0;
  try {
    new SocketAddress({ address, family: "ipv6" });
    return 6;
  } catch {
    return 0;
  }
}

/** Loopback, always allowed: the add-on itself and tools on the same host. */
export const LOOPBACK = ["127.0.0.0/8", "::1"] as const;

/**
 * Addresses and subnets a listener accepts. Entries must pass `parseAddressOrSubnet` (the config
 * model validates them); a malformed one throws.
 */
export class AddressAllowList {
  readonly #list = new BlockList();
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    this.entries = [...entries];
    for (const entry of entries) {
      const parsed = parseAddressOrSubnet(entry);
      if (parsed === null) throw new Error(`not an address or subnet: ${entry}`);
      if (parsed.prefix === undefined) this.#list.addAddress(parsed.address, parsed.family);
      else this.#list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  /** Whether a peer at `address` (as a socket reports it, IPv4-mapped or not) is allowed. */
  allows(address: string | undefined): boolean {
    const plain = normalizeAddress(address);
    const version = isIP(plain);
    if (version === 0) return false;
    return this.#list.check(plain, version === 4 ? "ipv4" : "ipv6");
  }
}
