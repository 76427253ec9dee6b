/**
 * The contract between the delivery dispatcher and the channel senders
 * (email here, webhooks in src/Webhooks/Channel.ts). The dispatcher owns
 * claiming, retry timing and state; a sender only tries one delivery once and
 * classifies the result, so a sender never fails: every problem is an outcome.
 */
import { Context, type Effect } from "effect"

export type DeliveryChannel = "email" | "webhook"

export interface DeliveryJob {
  /** deliveries.id as text */
  readonly id: string
  readonly idempotencyKey: string
  readonly channel: DeliveryChannel
  readonly eventId: string
  readonly eventType: string
  readonly recipientId: string | null
  readonly subscriptionId: string | null
  /** email: `{ to, subject, text, html }`; webhook: the event envelope JSON */
  readonly payload: unknown
  /** 1 on the first try */
  readonly attempt: number
}

export type DeliveryOutcome =
  | { readonly _tag: "Delivered"; readonly status?: number; readonly detail?: string }
  | { readonly _tag: "Retryable"; readonly reason: string; readonly status?: number }
  | { readonly _tag: "Permanent"; readonly reason: string; readonly status?: number }

export interface ChannelSender {
  /** Never fails: a transport problem is a Retryable or Permanent outcome. */
  readonly deliver: (job: DeliveryJob) => Effect.Effect<DeliveryOutcome>
}

export class EmailSender extends Context.Tag("OpsDesk/Notifications/EmailSender")<EmailSender, ChannelSender>() {}

export class WebhookSender extends Context.Tag("OpsDesk/Notifications/WebhookSender")<WebhookSender, ChannelSender>() {}

export const Delivered = (fields: { readonly status?: number; readonly detail?: string } = {}): DeliveryOutcome => ({
  _tag: "Delivered",
  ...fields
})

export const Retryable = (reason: string, status?: number): DeliveryOutcome =>
  status === undefined ? { _tag: "Retryable", reason } : { _tag: "Retryable", reason, status }

export const Permanent = (reason: string, status?: number): DeliveryOutcome =>
  status === undefined ? { _tag: "Permanent", reason } : { _tag: "Permanent", reason, status }

/**
 * The header that carries a try's number (`DeliveryJob.attempt`, also kept in
 * the delivery's attempt log) on every email and webhook: a receiver that sees
 * a delivery twice can tell a retry of an unanswered try from a resend.
 */
export const ATTEMPT_HEADER = "X-OpsDesk-Attempt"
