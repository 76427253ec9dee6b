/**
 * The API contract: the OpenAPI document the API serves passes
 * `@redocly/cli lint` with its recommended rules (no error, no warning), every
 * operation has a summary and a description, every error answer is declared
 * as problem details, and what the API answers matches: errors from every
 * source (HttpApi's decoding, a typed error, the request guards, the
 * authentication middleware) are `application/problem+json` with the RFC 9457
 * members and the earlier `_tag` and `message`.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { call, get, post } from "./support/Client.js"
import { makeFixtures } from "./support/Fixtures.js"
import { apiTestLayer } from "./support/Layers.js"

const run = promisify(execFile)
const METHODS = ["get", "put", "post", "delete", "patch"] as const

interface Operation {
  readonly summary?: string
  readonly description?: string
  readonly requestBody?: unknown
  readonly responses: Record<string, { readonly content?: Record<string, unknown> }>
}

const expectProblem = (
  reply: { status: number; headers: Record<string, string>; body: unknown },
  status: number,
  tag: string
) => {
  expect(reply.status, tag).toBe(status)
  expect(reply.headers["content-type"], tag).toContain("application/problem+json")
  expect(reply.body, tag).toMatchObject({ type: "about:blank", status, _tag: tag })
  const body = reply.body as { title: unknown; detail: unknown; message: unknown }
  expect(typeof body.title).toBe("string")
  expect(body.detail).toBe(body.message)
}

layer(apiTestLayer(), { excludeTestServices: true, timeout: "120 seconds" })("the API contract", (it) => {
  it.scoped("the served OpenAPI document passes redocly's recommended rules, every operation described", () =>
    Effect.gen(function*() {
      const spec = (yield* get("/openapi.json")).body as {
        paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>
      }
      const dir = mkdtempSync(join(tmpdir(), "opsdesk-openapi-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const file = join(dir, "openapi.json")
      writeFileSync(file, JSON.stringify(spec))
      const lint = yield* Effect.promise(() =>
        run(process.execPath, ["node_modules/@redocly/cli/bin/cli.js", "lint", file, "--format=json"], {
          maxBuffer: 64 * 1024 * 1024,
          env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" }
        }).then(
          ({ stdout }) => ({ ok: true, stdout }),
          (e: { stdout?: string; message: string }) => ({ ok: false, stdout: e.stdout ?? e.message })
        )
      )
      const report = JSON.parse(lint.stdout.slice(lint.stdout.indexOf("{"))) as {
        problems: ReadonlyArray<{ ruleId: string; message: string; location: ReadonlyArray<{ pointer: string }> }>
      }
      expect(report.problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual([])
      expect(lint.ok).toBe(true)

      for (const [path, item] of Object.entries(spec.paths)) {
        for (const method of METHODS) {
          const op = item[method]
          if (op === undefined) continue
          const name = `${method.toUpperCase()} ${path}`
          expect(op.summary, name).toBeTruthy()
          expect(op.description, name).toBeTruthy()
          expect(op.responses["500"], name).toBeDefined()
          if (op.requestBody !== undefined) {
            expect(op.responses["413"], name).toBeDefined()
            expect(op.responses["415"], name).toBeDefined()
          }
          for (const [code, response] of Object.entries(op.responses)) {
            if (Number(code) >= 400) {
              expect(Object.keys(response.content ?? {}), `${name} ${code}`).toEqual(["application/problem+json"])
            }
          }
        }
      }
    }))

  it.scoped("every error answer is problem details, whoever produced it", () =>
    Effect.gen(function*() {
      const fx = yield* makeFixtures
      const customer = yield* fx.user("customer")
      expectProblem(yield* get("/v1/users/me"), 401, "Unauthorized")
      expectProblem(yield* get("/no/such/route"), 404, "NotFound")
      expectProblem(yield* call("POST", "/v1/auth/login", { raw: "{oops" }), 400, "BadRequest")
      expectProblem(
        yield* call("POST", "/v1/auth/login", { raw: "{}", contentType: "text/plain" }),
        415,
        "UnsupportedMediaType"
      )
      const decode = yield* post("/v1/tickets", { title: 42 }, customer.token)
      expectProblem(decode, 400, "HttpApiDecodeError")
      expect((decode.body as { issues: ReadonlyArray<unknown> }).issues.length).toBeGreaterThan(0)
      expectProblem(yield* get(`/v1/tickets/${crypto.randomUUID()}`, customer.token), 404, "NotFound")
      expectProblem(yield* get("/v1/users", customer.token), 403, "Forbidden")
      const ok = yield* get("/health")
      expect(ok.headers["content-type"]).toContain("application/json")
      expect(ok.body).toEqual({ status: "ok" })
    }))
})
