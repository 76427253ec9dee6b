/**
 * The webhook address guard (Ssrf.ts), the allowlist's parsing (Config.ts),
 * signing (Signing.ts, checked with the `standardwebhooks` verifier a
 * receiver uses) and the delivery log's cursor: no network, no database.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Layer } from "effect"
import ipaddr from "ipaddr.js"
import { Webhook } from "standardwebhooks"
import { parseWebhookAllowEntry, type WebhookAllowEntry, WebhookConfig } from "../../src/Config.js"
import { decodeDeliveryCursor, encodeDeliveryCursor } from "../../src/Webhooks/Cursor.js"
import { generateSecret, secretProblem, signedHeaders } from "../../src/Webhooks/Signing.js"
import { checkUrl, HostResolver, pinnedLookup, type ResolvedAddress, specialRange } from "../../src/Webhooks/Ssrf.js"

const resolving = (answers: Record<string, ReadonlyArray<string>>) =>
  Layer.succeed(
    HostResolver,
    HostResolver.of({
      resolve: (host) => {
        const found = answers[host]
        return found === undefined
          ? Effect.fail(new Error(`getaddrinfo ENOTFOUND ${host}`))
          : Effect.succeed(
            found.map((address): ResolvedAddress => ({ address, family: address.includes(":") ? 6 : 4 }))
          )
      }
    })
  )

const allow = (...entries: Array<string>): ReadonlyArray<WebhookAllowEntry> =>
  entries.map((e) => parseWebhookAllowEntry(e)!)

const DNS = resolving({
  "hooks.example.com": ["93.184.216.34"],
  "dual.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
  "internal.example.com": ["10.1.2.3"],
  "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
  "metadata.example.com": ["169.254.169.254"],
  "mapped.example.com": ["::ffff:127.0.0.1"],
  "ula.example.com": ["fd00::1"],
  localhost: ["127.0.0.1", "::1"]
})

const check = (url: string, allowlist: ReadonlyArray<WebhookAllowEntry> = []) =>
  checkUrl(url, allowlist).pipe(Effect.provide(DNS), Effect.either)

describe("special ranges", () => {
  it("public unicast addresses pass; every private, local or embedding range is named", () => {
    const cases: Record<string, string | undefined> = {
      "93.184.216.34": undefined,
      "2606:2800:220:1::1": undefined,
      "127.0.0.1": "loopback",
      "10.0.0.1": "private",
      "172.16.5.4": "private",
      "192.168.1.1": "private",
      "169.254.169.254": "linkLocal",
      "100.64.0.1": "carrierGradeNat",
      "0.0.0.0": "unspecified",
      "224.0.0.1": "multicast",
      "255.255.255.255": "broadcast",
      "::1": "loopback",
      "::": "unspecified",
      "fe80::1": "linkLocal",
      "fd12:3456::1": "uniqueLocal",
      "ff02::1": "multicast",
      "::ffff:127.0.0.1": "loopback",
      "::ffff:10.0.0.1": "private",
      "::ffff:93.184.216.34": undefined,
      "::7f00:1": "ipv4Compatible",
      "64:ff9b::a00:1": "rfc6052",
      "2002:a00:1::": "6to4"
    }
    for (const [address, range] of Object.entries(cases)) {
      expect(specialRange(ipaddr.parse(address)), address).toBe(range)
    }
  })
})

describe("allowlist entries", () => {
  it("hosts, addresses and CIDR ranges parse; anything else is refused", () => {
    expect(parseWebhookAllowEntry("127.0.0.1")).toMatchObject({ _tag: "Range", text: "127.0.0.1" })
    expect(parseWebhookAllowEntry("10.0.0.0/8")).toMatchObject({ _tag: "Range" })
    expect(parseWebhookAllowEntry("[::1]")).toMatchObject({ _tag: "Range", text: "::1" })
    expect(parseWebhookAllowEntry("Hooks.Internal.")).toEqual({ _tag: "Host", host: "hooks.internal" })
    for (const bad of ["", "bad host", "2130706433", "0x7f.1", "10.0.0.0/33", "http://x"]) {
      expect(parseWebhookAllowEntry(bad), bad).toBeUndefined()
    }
  })
})

describe("WebhookConfig", () => {
  const read = (allow: string) =>
    WebhookConfig.pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["WEBHOOK_ALLOW_PRIVATE", allow]]))),
      Effect.either
    )
  it.effect("WEBHOOK_ALLOW_PRIVATE: a comma list; a bad entry stops start-up naming it; defaults", () =>
    Effect.gen(function*() {
      const ok = yield* read("127.0.0.1, hooks.internal ,10.0.0.0/8")
      expect(Either.isRight(ok) && ok.right.allowPrivate.map((e) => e._tag === "Host" ? e.host : e.text)).toEqual([
        "127.0.0.1",
        "hooks.internal",
        "10.0.0.0/8"
      ])
      expect(Either.isRight(ok) && [ok.right.disableAfter, ok.right.secretOverlapSeconds]).toEqual([25, 86_400])
      const bad = yield* read("127.0.0.1,bad host")
      expect(Either.isLeft(bad) && String(bad.left)).toMatch(/WEBHOOK_ALLOW_PRIVATE: "bad host" is not a host name/)
    }))
})

describe("checkUrl", () => {
  it.effect("a public https URL passes with its addresses", () =>
    Effect.gen(function*() {
      const ok = yield* check("https://dual.example.com/hooks?x=1")
      expect(Either.isRight(ok)).toBe(true)
      if (Either.isRight(ok)) {
        expect(ok.right.host).toBe("dual.example.com")
        expect(ok.right.addresses.map((a) => a.address)).toEqual(["93.184.216.34", "2606:2800:220:1::1"])
      }
    }))

  it.effect("refusals name their reason", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string, RegExp]> = [
        ["not a url", "BadUrl", /not a valid absolute URL/],
        ["ftp://hooks.example.com/x", "BadUrl", /must use https/],
        ["https://user:pw@hooks.example.com/", "BadUrl", /credentials/],
        ["http://hooks.example.com/", "NotHttps", /must use https/],
        ["https://internal.example.com/", "PrivateAddress", /10\.1\.2\.3 \(private\)/],
        ["https://mixed.example.com/", "PrivateAddress", /127\.0\.0\.1 \(loopback\)/],
        ["https://metadata.example.com/", "PrivateAddress", /linkLocal/],
        ["https://mapped.example.com/", "PrivateAddress", /loopback/],
        ["https://ula.example.com/", "PrivateAddress", /uniqueLocal/],
        ["https://localhost/", "PrivateAddress", /loopback/],
        ["https://127.0.0.1/", "PrivateAddress", /loopback/],
        ["https://2130706433/", "PrivateAddress", /127\.0\.0\.1/],
        ["https://[::1]/", "PrivateAddress", /loopback/],
        ["https://[::ffff:169.254.169.254]/", "PrivateAddress", /linkLocal/],
        ["https://nowhere.example.com/", "Unresolvable", /does not resolve/],
        [`https://hooks.example.com/${"a".repeat(2100)}`, "BadUrl", /at most 2048/]
      ]
      for (const [url, reason, message] of cases) {
        const result = yield* check(url)
        expect(Either.isLeft(result), url).toBe(true)
        if (Either.isLeft(result)) {
          expect(result.left.reason, url).toBe(reason)
          expect(result.left.message, url).toMatch(message)
        }
      }
    }))

  it.effect("the allowlist admits listed hosts and ranges, for plain http too, and nothing else", () =>
    Effect.gen(function*() {
      expect(Either.isRight(yield* check("http://127.0.0.1:8080/x", allow("127.0.0.1")))).toBe(true)
      expect(Either.isRight(yield* check("http://localhost:8080/x", allow("localhost")))).toBe(true)
      expect(Either.isRight(yield* check("https://internal.example.com/", allow("10.0.0.0/8")))).toBe(true)
      // Both of localhost's addresses must be admitted: ::1 is not in 127.0.0.1/32.
      const partly = yield* check("https://localhost/", allow("127.0.0.1"))
      expect(Either.isLeft(partly) && partly.left.message).toMatch(/::1/)
      // A listed range admits private addresses, not plain http to a public host.
      const http = yield* check("http://hooks.example.com/", allow("10.0.0.0/8"))
      expect(Either.isLeft(http) && http.left.reason).toBe("NotHttps")
      const other = yield* check("https://internal.example.com/", allow("192.168.0.0/16"))
      expect(Either.isLeft(other) && other.left.reason).toBe("PrivateAddress")
    }))
})

describe("pinnedLookup", () => {
  const addresses: ReadonlyArray<ResolvedAddress> = [
    { address: "93.184.216.34", family: 4 },
    { address: "2606:2800:220:1::1", family: 6 }
  ]
  it("answers with the checked addresses, whatever name it is asked", () => {
    const lookup = pinnedLookup(addresses)
    lookup("evil.example.com", { all: true }, (err, result) => {
      expect(err).toBeNull()
      expect(result).toEqual([{ address: "93.184.216.34", family: 4 }, { address: "2606:2800:220:1::1", family: 6 }])
    })
    lookup("evil.example.com", {}, (_err, address, family) => {
      expect([address, family]).toEqual(["93.184.216.34", 4])
    })
    lookup("evil.example.com", { family: 6 }, (_err, address, family) => {
      expect([address, family]).toEqual(["2606:2800:220:1::1", 6])
    })
  })
})

describe("signing", () => {
  it("generated secrets are whsec_ + base64 of 32 bytes, and acceptable", () => {
    const secret = generateSecret()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(secretProblem(secret)).toBeUndefined()
    expect(generateSecret()).not.toBe(secret)
  })

  it("caller secrets: the format and 24 to 64 bytes, and the message never quotes the secret", () => {
    const short = "whsec_" + Buffer.alloc(16, 7).toString("base64")
    expect(secretProblem(short)).toMatch(/too short: its key has 16 bytes, at least 24/)
    expect(secretProblem("whsec_" + Buffer.alloc(65, 1).toString("base64"))).toMatch(/too long/)
    expect(secretProblem("plain-secret-value-that-is-long-enough")).toMatch(/must be "whsec_"/)
    expect(secretProblem("whsec_not*base64")).toMatch(/must be "whsec_"/)
    expect(secretProblem(short)).not.toContain(short.slice(6))
    expect(secretProblem("whsec_" + Buffer.alloc(24, 1).toString("base64"))).toBeUndefined()
  })

  it("a signature verifies with the standardwebhooks verifier; during an overlap, with either secret", () => {
    const current = generateSecret()
    const previous = generateSecret()
    const body = JSON.stringify({ type: "ticket.created", data: { id: "x" } })
    const headers = signedHeaders([current, previous], "msg_1", new Date(), body)
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2)
    expect(new Webhook(current).verify(body, headers)).toEqual(JSON.parse(body))
    expect(new Webhook(previous).verify(body, headers)).toEqual(JSON.parse(body))
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow(/No matching signature/)
    expect(() => new Webhook(current).verify(body + " ", headers)).toThrow()
    const single = signedHeaders([current], "msg_1", new Date(), body)
    expect(single["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/)
    expect(() => new Webhook(previous).verify(body, single)).toThrow()
  })
})

describe("delivery cursor", () => {
  it("round-trips and refuses anything it did not make", () => {
    const position = { ts: "2026-12-02T13:45:00.123456Z", id: "9007199254740993" }
    expect(decodeDeliveryCursor(encodeDeliveryCursor(position))).toEqual(position)
    const bad = [
      "!!",
      Buffer.from("2026-12-02T13:45:00.123456Z|abc").toString("base64url"),
      Buffer.from("2026-02-31T13:45:00.123456Z|1").toString("base64url"),
      // Year 0 parses in JavaScript but is out of PostgreSQL's range: a 400, not the database's error.
      Buffer.from("0000-01-01T00:00:00.000000Z|1").toString("base64url"),
      Buffer.from("2026-12-02T13:45:00.123456Z|99999999999999999999").toString("base64url"),
      Buffer.from("2026-12-02T13:45:00.123456Z|1|2").toString("base64url"),
      Buffer.from("2026-12-02T13:45:00.123456Z|01").toString("base64url")
    ]
    for (const cursor of bad) expect(decodeDeliveryCursor(cursor), cursor).toBeNull()
  })
})
