/**
 * The chaos run's judgement of a delivery received twice (scripts/lib/receivers.ts,
 * explainDoubles): each receipt is matched to the try that carried it, and
 * only a late answer or a crash between send and record may explain a copy.
 */
import { describe, expect, it } from "@effect/vitest"
import { type CrashWindow, explainDoubles, type LoggedTry, type Receipt } from "../../scripts/lib/receivers.js"

const KEY = "k".repeat(64)
const at = (ms: number, attempt: number | null): Receipt => ({ at: ms, attempt })
const tried = (attempt: number, outcome: string, status: number | null): LoggedTry => ({
  key: KEY,
  attempt,
  outcome,
  status
})
const kill: CrashWindow = { name: "worker SIGKILL", start: 1_500, end: 3_000 }

const judge = (receipts: ReadonlyArray<Receipt>, log: ReadonlyArray<LoggedTry>, crashes: Array<CrashWindow> = []) =>
  explainDoubles([[KEY, receipts]], log, crashes)

describe("explainDoubles", () => {
  it("a try given up on without an answer, then delivered: a late answer", () => {
    const { byCause, unexplained } = judge([at(1_000, 1), at(2_000, 2)], [
      tried(1, "retry", null),
      tried(2, "delivered", 200)
    ])
    expect(unexplained).toEqual([])
    expect([...byCause.values()]).toEqual([1])
  })

  it("the same try sent again after a crash between send and record", () => {
    const { byCause, unexplained } = judge([at(1_000, 3), at(40_000, 3)], [tried(3, "delivered", 250)], [kill])
    expect(unexplained).toEqual([])
    expect(byCause.get("worker SIGKILL")).toBe(1)
  })

  it("a try the worker wrote just before its kill, read by the receiver after it: the kill's window explains it", () => {
    // The harness's window runs from the signal to the successor's start (scripts/chaos.ts `crashed`).
    const killedAt: CrashWindow = { name: "worker SIGKILL", start: 10_000, end: 10_450 }
    const { byCause, unexplained } = judge([at(10_005, 1), at(42_000, 1)], [tried(1, "delivered", 200)], [killedAt])
    expect(unexplained).toEqual([])
    expect(byCause.get("worker SIGKILL")).toBe(1)
    // The window as one instant at the signal (the harness before): the same receipts are unexplained.
    expect(
      judge([at(10_005, 1), at(42_000, 1)], [tried(1, "delivered", 200)], [{ ...killedAt, end: 10_000 }])
        .unexplained
    ).toHaveLength(1)
  })

  it("the same try twice with no crash between is unexplained", () => {
    expect(judge([at(1_000, 3), at(40_000, 3)], [tried(3, "delivered", 250)]).unexplained).toHaveLength(1)
  })

  it("a try the receiver answered with a refusal cannot have been taken", () => {
    const { unexplained } = judge([at(1_000, 1), at(2_000, 2)], [
      tried(1, "retry", 503),
      tried(2, "delivered", 200)
    ])
    expect(unexplained).toHaveLength(1)
    expect(unexplained[0]).toContain("try 1")
  })

  it("a send after the delivered one is unexplained, even with a crash before it", () => {
    const { unexplained } = judge([at(1_000, 1), at(5_000, 2)], [tried(1, "delivered", 250)], [kill])
    expect(unexplained).toHaveLength(1)
    expect(unexplained[0]).toContain("try 2")
  })

  it("a receipt without a try number is explained only by a crash", () => {
    expect(judge([at(1_000, null), at(2_000, 2)], [tried(2, "delivered", 200)]).unexplained).toHaveLength(1)
    expect(judge([at(1_000, null), at(4_000, 2)], [tried(2, "delivered", 200)], [kill]).unexplained).toEqual([])
  })
})
