/**
 * The API's id, for the features' handlers. A feature's Http.ts implements its
 * group against `apiOf(Group)`, a one-group HttpApi, instead of the full API
 * (App/Api.ts, above the features): HttpApiBuilder matches a group's handlers
 * to the API by the API's id and the group's name, and the type checker
 * rejects a layer of handlers whose id is not the full API's.
 */
import { HttpApi, type HttpApiGroup } from "@effect/platform"
import { Context } from "effect"

export const API_ID = "opsdesk"

export const apiOf = <Group extends HttpApiGroup.HttpApiGroup.Any>(group: Group) => HttpApi.make(API_ID).add(group)

/**
 * Marks a GET endpoint (a fixed path, behind the Authentication middleware)
 * whose 200 answers the HTTP front cache (App/FrontCache.ts) may keep, per
 * bearer token and query, while the Redis counter this names stays unchanged:
 * whatever changes what the endpoint answers must bump that counter.
 */
export class FrontCached extends Context.Tag("OpsDesk/Kit/FrontCached")<FrontCached, string>() {}
