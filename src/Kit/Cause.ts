/** One way to turn anything thrown or failed into a line of text for a log or an error message. */
export const describe = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "message" in cause && typeof cause.message === "string" &&
    cause.message !== ""
    ? cause.message
    : String(cause)
