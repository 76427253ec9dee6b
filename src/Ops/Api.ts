/** The ops dashboard's JSON endpoints (admins only); the page itself is a plain route (Page.ts). */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Forbidden } from "../Kit/Errors.js"
import {
  DeliveriesListParams,
  DeliveryList,
  DeliveryNotFound,
  DeliveryRetryRequest,
  DeliveryRetryResponse,
  DiscardRequest,
  DiscardResponse,
  DlqEntryNotFound,
  DlqList,
  DlqListParams,
  DlqMessage,
  DlqMessagePath,
  History,
  NotReplayable,
  Overview,
  OverviewParams,
  PurgeResponse,
  ReplayRequest,
  ReplayResponse,
  Unavailable
} from "./Domain.js"

export class OpsApi extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("getOverview", "/overview")
      .annotate(
        OpenApi.Description,
        "What the /ops dashboard polls: each panel reads its own source and reports its own error, so one unreachable dependency blanks only its panel."
      )
      .setUrlParams(OverviewParams)
      .addSuccess(Overview)
      .annotate(
        OpenApi.Summary,
        "Queue depths, outbox backlog, the worker's counters and the first DLQ entries; a source that does not answer is reported in its panel"
      )
  )
  .add(
    HttpApiEndpoint.get("listDlq", "/dlq")
      .annotate(
        OpenApi.Description,
        "Dead letters in queue order, read without removing them; `limit` and `after` (each page's `next`) page through the whole queue, and `event`, `kind` and `eventId` keep only the matching ones (the page counts matches). A page reads the messages up to its end, plus one."
      )
      .setUrlParams(DlqListParams)
      .addSuccess(DlqList)
      .addError(DlqEntryNotFound, { status: 404 })
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Dead-lettered messages with their reason, in queue order (nothing is removed)")
  )
  .add(
    HttpApiEndpoint.get("getDlqMessage", "/dlq/:id")
      .setPath(DlqMessagePath)
      .annotate(
        OpenApi.Description,
        "The dashboard's message view: the message is read and given back, as a listing does; 404 if it is gone."
      )
      .addSuccess(DlqMessage)
      .addError(DlqEntryNotFound, { status: 404 })
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "One dead letter whole: its body, headers and properties")
  )
  .add(
    HttpApiEndpoint.get("getHistory", "/history")
      .annotate(
        OpenApi.Description,
        "What the dashboard's charts draw: throughput, failures, lag and queue depths over the last hour, sampled by this API process (from the first dashboard read on) every OPS_HISTORY_INTERVAL_MS."
      )
      .addSuccess(History)
      .annotate(OpenApi.Summary, "Samples of the last hour, oldest first")
  )
  .add(
    HttpApiEndpoint.get("listDeliveries", "/deliveries")
      .annotate(
        OpenApi.Description,
        "The notification deliveries the dispatchers gave up on (or, with `state`, pending or delivered ones), newest first; `before` pages on."
      )
      .setUrlParams(DeliveriesListParams)
      .addSuccess(DeliveryList)
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Notification deliveries, failed ones by default")
  )
  .add(
    HttpApiEndpoint.post("retryDeliveries", "/deliveries/retry")
      .annotate(
        OpenApi.Description,
        "As `opsdesk deliveries retry`: the deliveries go back to pending, due now, with a fresh run of retries (their attempts so far stay in the log), and the dispatchers are woken."
      )
      .setPayload(DeliveryRetryRequest)
      .addSuccess(DeliveryRetryResponse)
      .addError(DeliveryNotFound, { status: 404 })
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Retry one failed delivery, or every failed one (of a channel)")
  )
  .add(
    HttpApiEndpoint.post("replayDlq", "/dlq/replay")
      .annotate(
        OpenApi.Description,
        "The replayed copy keeps its event id, so the worker's idempotency still holds; replaying an event already processed is a duplicate and does nothing."
      )
      .setPayload(ReplayRequest)
      .addSuccess(ReplayResponse)
      .addError(DlqEntryNotFound, { status: 404 })
      .addError(NotReplayable, { status: 409 })
      .addError(Unavailable, { status: 503 })
      .annotate(
        OpenApi.Summary,
        "Republish one entry (or all) to its original routing key; 404 if the entry is gone, 409 if it cannot be replayed (poison)"
      )
  )
  .add(
    HttpApiEndpoint.post("discardDlq", "/dlq/discard")
      .annotate(
        OpenApi.Description,
        "Takes exactly the entry named (by position and event id) off the queue; 404 if it moved or is gone."
      )
      .setPayload(DiscardRequest)
      .addSuccess(DiscardResponse)
      .addError(DlqEntryNotFound, { status: 404 })
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Remove one entry from the DLQ for good")
  )
  .add(
    HttpApiEndpoint.post("purgeDlq", "/dlq/purge")
      .annotate(OpenApi.Description, "Every dead letter is removed; there is no undo. Use discard for one entry.")
      .addSuccess(PurgeResponse)
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Remove every entry from the DLQ for good")
  )
  .addError(Forbidden, { status: 403 })
  .middleware(Authentication)
  .prefix("/ops/api")
  .annotate(OpenApi.Description, "The ops dashboard (GET /ops): admins only")
{}
