/**
 * `GET /asyncapi.json`: the events contract (Broker/AsyncApi.ts), built once;
 * ETag and gzip come from CachedDocs.ts like /openapi.json's. A plain route:
 * it describes the broker's messages, not an HTTP endpoint.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { asyncApiDocument } from "../Broker/AsyncApi.js"

export const ASYNCAPI_PATH = "/asyncapi.json"

export const AsyncApiRouteLive = HttpApiBuilder.Router.use((router) => {
  // One response object for the life of the process: CachedDocs prepares its ETag and gzip copy once per object.
  const response = HttpServerResponse.uint8Array(new TextEncoder().encode(JSON.stringify(asyncApiDocument())), {
    contentType: "application/json"
  })
  return router.get(ASYNCAPI_PATH, Effect.succeed(response))
})
