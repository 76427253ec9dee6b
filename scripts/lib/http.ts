/**
 * The harnesses' HTTP client for the OpsDesk API: JSON in and out, a bearer
 * token, a timeout, and requests spread over several API processes in turn.
 */

export interface Answer {
  readonly status: number
  /** The parsed JSON body, or the text when it is not JSON. */
  readonly body: unknown
}

/** `a.body[key]` when the body is a JSON object. */
export const field = (a: Answer, key: string): unknown =>
  typeof a.body === "object" && a.body !== null ? (a.body as Record<string, unknown>)[key] : undefined

export interface ApiClient {
  /** The APIs' base URLs (`http://127.0.0.1:<port>`); add one as its process starts. */
  readonly bases: Array<string>
  readonly http: (method: string, path: string, token?: string, body?: unknown) => Promise<Answer>
  /** Logs in and returns the access token; throws on anything but 200. */
  readonly login: (username: string, password: string) => Promise<string>
}

export const apiClient = (timeoutMs = 15_000): ApiClient => {
  const bases: Array<string> = []
  let turn = 0
  const http = async (method: string, path: string, token?: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${bases[turn++ % bases.length]}${path}`, {
      method,
      headers: {
        ...(body ? { "content-type": "application/json" } : {}),
        ...(token ? { authorization: `Bearer ${token}` } : {})
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs)
    })
    const text = await res.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed }
  }
  const login = async (username: string, password: string) => {
    const a = await http("POST", "/v1/auth/login", undefined, { username, password })
    if (a.status !== 200) throw new Error(`login ${username} failed: ${a.status} ${JSON.stringify(a.body)}`)
    return String(field(a, "accessToken"))
  }
  return { bases, http, login }
}
