/**
 * The client a login comes from, as the throttle and the password-check queue
 * count it: an IPv4 address (also when it arrives IPv4-mapped,
 * `::ffff:a.b.c.d`), or an IPv6 address's /64 — the smallest block a single
 * subscriber is given, so rotating addresses inside it is still one client.
 */
import ipaddr from "ipaddr.js"

/** What the throttle calls a login whose transport tells no address. */
export const UNKNOWN_CLIENT = "unknown"

/** `1.2.3.4`, `2001:db8:1:2::/64`, or the raw text (lower case) of something that does not parse. */
export const clientOf = (address: string | undefined): string => {
  if (address === undefined || address === "") return UNKNOWN_CLIENT
  try {
    const parsed = ipaddr.process(address)
    if (parsed.kind() === "ipv4") return parsed.toString()
    const prefix = new ipaddr.IPv6([...(parsed as ipaddr.IPv6).parts.slice(0, 4), 0, 0, 0, 0])
    return `${prefix.toRFC5952String()}/64`
  } catch {
    return address.toLowerCase()
  }
}
