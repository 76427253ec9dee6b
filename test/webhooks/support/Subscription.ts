/**
 * The set-up every webhook test starts from: an admin (a scoped test user) and
 * a subscription made through the API, removed with all it caused when the
 * scope closes; with `subscribedReceiver`, pointed at a fresh receiver on
 * loopback (test/webhooks/support/Receiver.ts).
 */
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import { CreatedWebhookSubscription } from "../../../src/Webhooks/Domain.js"
import { decode, post } from "../../api/support/Client.js"
import { makeFixtures } from "../../api/support/Fixtures.js"
import { trackSubscriptions } from "./Cleanup.js"
import { withReceiver } from "./Receiver.js"

/** An admin and a subscription of `eventTypes` to `url` (201 expected). */
export const withSubscription = (url: string, eventTypes: ReadonlyArray<string> = ["ticket.created"]) =>
  Effect.gen(function*() {
    const fx = yield* makeFixtures
    const track = yield* trackSubscriptions
    const admin = yield* fx.user("admin")
    const made = yield* post("/v1/webhooks", { url, eventTypes }, admin.token)
    expect(made.status, made.text).toBe(201)
    const subscription = decode(CreatedWebhookSubscription, made)
    track(subscription.id)
    return { fx, track, admin, subscription }
  })

/** A receiver on loopback and a subscription to its `path`. */
export const subscribedReceiver = (path: string, eventTypes?: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const receiver = yield* withReceiver
    const made = yield* withSubscription(receiver.url(path), eventTypes)
    return { ...made, receiver }
  })
