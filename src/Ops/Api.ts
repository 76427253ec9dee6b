/** The ops dashboard's JSON endpoints (admins only); the page itself is a plain route (Page.ts). */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Authentication } from "../Auth/Api.js"
import { Forbidden } from "../Kit/Errors.js"
import {
  DiscardRequest,
  DiscardResponse,
  DlqEntryNotFound,
  DlqList,
  DlqListParams,
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
      .setUrlParams(OverviewParams)
      .addSuccess(Overview)
      .annotate(
        OpenApi.Summary,
        "Queue depths, outbox backlog, the worker's counters and the first DLQ entries; a source that does not answer is reported in its panel"
      )
  )
  .add(
    HttpApiEndpoint.get("listDlq", "/dlq")
      .setUrlParams(DlqListParams)
      .addSuccess(DlqList)
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Dead-lettered messages with their reason, in queue order (nothing is removed)")
  )
  .add(
    HttpApiEndpoint.post("replayDlq", "/dlq/replay")
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
      .setPayload(DiscardRequest)
      .addSuccess(DiscardResponse)
      .addError(DlqEntryNotFound, { status: 404 })
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Remove one entry from the DLQ for good")
  )
  .add(
    HttpApiEndpoint.post("purgeDlq", "/dlq/purge")
      .addSuccess(PurgeResponse)
      .addError(Unavailable, { status: 503 })
      .annotate(OpenApi.Summary, "Remove every entry from the DLQ for good")
  )
  .addError(Forbidden, { status: 403 })
  .middleware(Authentication)
  .prefix("/ops/api")
  .annotate(OpenApi.Description, "The ops dashboard (GET /ops): admins only")
{}
