/**
 * The address guard of webhook URLs: no request an admin configures may make
 * OpsDesk connect where it should not (its own loopback, the cloud metadata
 * service at 169.254.169.254, the private network behind it).
 *
 * A URL must be `https`, and every address its host resolves to must be a
 * public unicast one, unless `WEBHOOK_ALLOW_PRIVATE` lists the host's name
 * or ranges holding all of its addresses. The check runs when a subscription
 * is created or changed, and again before every delivery, whose connection
 * then goes to exactly the addresses that passed (`pinnedLookup`): a DNS
 * answer that changes between the check and the connection (rebinding)
 * cannot redirect it.
 */
import { Context, Data, Effect, Layer } from "effect"
import ipaddr from "ipaddr.js"
import { lookup } from "node:dns/promises"
import type { LookupFunction } from "node:net"
import type { WebhookAllowEntry } from "../Config.js"
import { describe } from "../Kit/Cause.js"

export const MAX_URL_LENGTH = 2048

/** Why a URL is refused: `field`-level reasons an API caller can act on. */
export class UnsafeUrl extends Data.TaggedError("UnsafeUrl")<{
  readonly reason: "BadUrl" | "NotHttps" | "PrivateAddress" | "Unresolvable"
  readonly message: string
}> {}

export interface ResolvedAddress {
  readonly address: string
  readonly family: 4 | 6
}

/** How host names become addresses: the system resolver (getaddrinfo: /etc/hosts, then DNS) unless a test swaps it. */
export class HostResolver extends Context.Tag("OpsDesk/Webhooks/HostResolver")<HostResolver, {
  readonly resolve: (host: string) => Effect.Effect<ReadonlyArray<ResolvedAddress>, Error>
}>() {}

export const SystemResolverLive = Layer.succeed(
  HostResolver,
  HostResolver.of({
    resolve: (host) =>
      Effect.tryPromise({
        try: () => lookup(host, { all: true, verbatim: true }),
        catch: (e) => (e instanceof Error ? e : new Error(String(e)))
      }).pipe(
        Effect.map((answers) =>
          answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 as const : 4 as const }))
        )
      )
  })
)

/** A URL that passed, with the addresses a connection may use (in the resolver's order). */
export interface CheckedUrl {
  readonly url: URL
  /** The host as the URL names it, without IPv6 brackets. */
  readonly host: string
  readonly addresses: ReadonlyArray<ResolvedAddress>
}

type Address = ipaddr.IPv4 | ipaddr.IPv6

/** IPv4-compatible IPv6 (`::a.b.c.d`, deprecated): ipaddr.js calls it unicast, and it names an IPv4 address. */
const IPV4_COMPATIBLE: [ipaddr.IPv6, number] = [ipaddr.IPv6.parse("::"), 96]

/**
 * The special range an address is in (`loopback`, `private`, `linkLocal`,
 * `uniqueLocal`, `multicast`, `unspecified`, …), or undefined for a public
 * unicast address. IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is judged as the
 * IPv4 address it maps; NAT64, 6to4 and Teredo prefixes, which embed IPv4
 * addresses, count as special.
 */
export const specialRange = (address: Address): string | undefined => {
  if (address.kind() === "ipv6") {
    const v6 = address as ipaddr.IPv6
    if (v6.isIPv4MappedAddress()) return specialRange(v6.toIPv4Address())
  }
  const range = address.range()
  if (range !== "unicast") return range
  return address.kind() === "ipv6" && (address as ipaddr.IPv6).match(IPV4_COMPATIBLE) ? "ipv4Compatible" : undefined
}

const inRange = (address: Address, entry: WebhookAllowEntry): boolean => {
  if (entry._tag !== "Range") return false
  const [network, bits] = entry.range
  const candidate = address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress()
    ? (address as ipaddr.IPv6).toIPv4Address()
    : address
  return candidate.kind() === network.kind() && candidate.match(network, bits)
}

const refuse = (reason: UnsafeUrl["reason"], message: string) => Effect.fail(new UnsafeUrl({ reason, message }))

/** The URL parsed and its form checked (no addresses yet): scheme, credentials, length. */
export const parseUrl = (raw: string): Effect.Effect<URL, UnsafeUrl> => {
  if (raw.length > MAX_URL_LENGTH) return refuse("BadUrl", `url must be at most ${MAX_URL_LENGTH} characters long`)
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return refuse("BadUrl", "url is not a valid absolute URL")
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return refuse("BadUrl", `url must use https, not ${url.protocol.slice(0, 20)}`)
  }
  if (url.username !== "" || url.password !== "") {
    return refuse("BadUrl", "url must not contain credentials: receivers authenticate deliveries by their signature")
  }
  if (url.hostname === "") return refuse("BadUrl", "url has no host")
  return Effect.succeed(url)
}

/**
 * Checks `raw` against the allowlist and the host's current addresses.
 * Fails with the reason a caller can act on; never resolves for a URL whose
 * form is already wrong.
 */
export const checkUrl = (raw: string, allow: ReadonlyArray<WebhookAllowEntry>) =>
  Effect.gen(function*() {
    const url = yield* parseUrl(raw)
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "")
    const hostListed = allow.some((entry) => entry._tag === "Host" && entry.host === host)
    let addresses: ReadonlyArray<ResolvedAddress>
    if (ipaddr.isValid(host)) {
      const parsed = ipaddr.parse(host)
      addresses = [{ address: parsed.toString(), family: parsed.kind() === "ipv4" ? 4 : 6 }]
    } else {
      const resolver = yield* HostResolver
      addresses = yield* resolver.resolve(host).pipe(
        Effect.mapError((e) =>
          new UnsafeUrl({ reason: "Unresolvable", message: `url's host ${host} does not resolve: ${describe(e)}` })
        )
      )
      if (addresses.length === 0) return yield* refuse("Unresolvable", `url's host ${host} has no address`)
    }
    const parsed = addresses.map((a) => ipaddr.parse(a.address))
    const allListed = parsed.every((a) => allow.some((entry) => inRange(a, entry)))
    if (!hostListed) {
      for (const address of parsed) {
        const range = specialRange(address)
        if (range !== undefined && !allow.some((entry) => inRange(address, entry))) {
          return yield* refuse(
            "PrivateAddress",
            `url's host ${host} resolves to ${address.toString()} (${range}): ` +
              "webhooks go to public addresses only, unless WEBHOOK_ALLOW_PRIVATE lists the host"
          )
        }
      }
      if (url.protocol !== "https:" && !allListed) {
        return yield* refuse("NotHttps", "url must use https (plain http only for hosts in WEBHOOK_ALLOW_PRIVATE)")
      }
    }
    const checked: CheckedUrl = { url, host, addresses }
    return checked
  })

/**
 * A `lookup` for http(s).request that answers with the checked addresses,
 * whatever name it is asked for: the connection goes where the check said,
 * while the Host header and TLS (SNI, certificate name) still use the URL's name.
 */
export const pinnedLookup =
  (addresses: ReadonlyArray<ResolvedAddress>): LookupFunction => (_host, options, callback) => {
    const first = addresses[0]!
    if (options.all === true) {
      callback(null, addresses.map((a) => ({ address: a.address, family: a.family })))
    } else {
      const wanted = options.family === 4 || options.family === 6
        ? addresses.find((a) => a.family === options.family)
        : first
      const chosen = wanted ?? first
      callback(null, chosen.address, chosen.family)
    }
  }
