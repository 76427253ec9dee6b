/**
 * The email channel: sends a delivery's `{ to, subject, text, html }` over SMTP
 * with nodemailer (a pool of SMTP_URL connections, one per concurrent
 * delivery), `Message-ID: <idempotency-key@opsdesk>` so a receiving server or
 * mail client can drop a resend. With SMTP_URL unset it logs the seed's
 * "[FAKE]" line instead and reports the email delivered.
 *
 * Classification (RFC 5321): a 5xx reply is permanent (the server will say
 * the same again), a 4xx reply and every transport problem (refused, timed
 * out, connection dropped, TLS, DNS) is worth retrying; so is a failed login,
 * a configuration problem that retries bridge until it is fixed.
 */
import { Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import nodemailer from "nodemailer"
import { DispatchConfig, SmtpConfig } from "../Config.js"
import {
  ATTEMPT_HEADER,
  type ChannelSender,
  Delivered,
  type DeliveryJob,
  type DeliveryOutcome,
  EmailSender,
  Permanent,
  Retryable
} from "./Channel.js"

export const EmailPayload = Schema.Struct({
  to: Schema.String,
  subject: Schema.String,
  text: Schema.String,
  html: Schema.String
})
export type EmailPayload = typeof EmailPayload.Type

const decodePayload = Schema.decodeUnknownEither(EmailPayload)

/** The Message-ID of a delivery: the same for every try, so a resend can be recognised. */
export const messageIdOf = (idempotencyKey: string) => `<${idempotencyKey}@opsdesk>`

interface SmtpError {
  readonly code?: string
  readonly responseCode?: number
  readonly response?: string
  readonly message?: string
}

const asSmtpError = (u: unknown): SmtpError => (typeof u === "object" && u !== null ? (u as SmtpError) : {})

/** One line, bounded: the reason stored with the attempt. */
const oneLine = (s: string) => {
  const flat = s.replace(/\s+/g, " ").trim()
  return flat.length > 500 ? `${flat.slice(0, 499)}…` : flat
}

export const classify = (error: unknown): DeliveryOutcome => {
  const e = asSmtpError(error)
  const text = oneLine(e.response ?? e.message ?? String(error))
  const reason = e.code === undefined ? text : `${e.code}: ${text}`
  if (typeof e.responseCode === "number") {
    return e.responseCode >= 500 && e.responseCode < 600
      ? Permanent(reason, e.responseCode)
      : Retryable(reason, e.responseCode)
  }
  return Retryable(reason)
}

const withPayload = (job: DeliveryJob, send: (p: EmailPayload) => Effect.Effect<DeliveryOutcome>) => {
  const decoded = decodePayload(job.payload)
  return decoded._tag === "Left"
    ? Effect.succeed(Permanent("The delivery's payload is not an email ({ to, subject, text, html })"))
    : send(decoded.right)
}

/** The default without SMTP_URL: the seed's log line, and the email counts as delivered. */
export const fakeEmailSender: ChannelSender = {
  deliver: (job) =>
    withPayload(
      job,
      (p) =>
        Effect.logInfo(`   📧 [FAKE] Email notification sent to ${job.recipientId ?? "?"} <${p.to}>: ${p.subject}`)
          .pipe(
            Effect.as(Delivered({ detail: "fake (SMTP_URL unset)" }))
          )
    )
}

export const makeSmtpSender = (options: {
  readonly url: string
  readonly from: string
  readonly timeout: Duration.Duration
  readonly maxConnections: number
}) =>
  Effect.gen(function*() {
    const ms = Duration.toMillis(options.timeout)
    const transport = yield* Effect.acquireRelease(
      Effect.sync(() =>
        nodemailer.createTransport({
          url: options.url,
          pool: true,
          maxConnections: options.maxConnections,
          connectionTimeout: ms,
          greetingTimeout: ms,
          socketTimeout: ms
        })
      ),
      (t) => Effect.sync(() => t.close())
    )
    const sender: ChannelSender = {
      deliver: (job) =>
        withPayload(job, (p) =>
          Effect.tryPromise({
            // Interruption (this bound, the dispatcher's, shutdown) aborts the send: nodemailer takes the message
            // out of the pool's queue or closes the connection carrying it, so a send given up on cannot land later.
            try: (signal) =>
              transport.sendMail({
                from: options.from,
                to: p.to,
                subject: p.subject,
                text: p.text,
                html: p.html,
                messageId: messageIdOf(job.idempotencyKey),
                headers: {
                  "X-OpsDesk-Event": `${job.eventType} ${job.eventId}`,
                  [ATTEMPT_HEADER]: String(job.attempt)
                },
                signal
              }),
            catch: classify
          }).pipe(
            Effect.map((info) =>
              Delivered({ status: 250, detail: oneLine(typeof info.response === "string" ? info.response : "") })
            ),
            Effect.merge,
            // Each SMTP step has its own timeout; this bounds the sum (connect, greeting, every command).
            Effect.timeoutTo({
              duration: Duration.times(options.timeout, 3),
              onSuccess: (o): DeliveryOutcome => o,
              onTimeout: () =>
                Retryable(`ETIMEDOUT: no answer within ${Duration.format(Duration.times(options.timeout, 3))}`)
            })
          ))
    }
    return sender
  })

/** SMTP when SMTP_URL is set, the fake sender otherwise. */
export const EmailSenderLive = Layer.scoped(
  EmailSender,
  Effect.gen(function*() {
    const smtp = yield* SmtpConfig
    const dispatch = yield* DispatchConfig
    if (Option.isNone(smtp.url)) {
      yield* Effect.logInfo("SMTP_URL is not set: emails are logged as [FAKE] lines, not sent")
      return fakeEmailSender
    }
    return yield* makeSmtpSender({
      url: Redacted.value(smtp.url.value),
      from: smtp.from,
      timeout: smtp.timeout,
      maxConnections: dispatch.emailConcurrency
    })
  })
)
