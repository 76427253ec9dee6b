/**
 * JSON nesting depth. No request or event of OpsDesk nests more than a few
 * levels, but a few KiB of `[[[[…` parse fine and then overflow the stack
 * wherever the value is walked recursively (Schema's error messages quote the
 * value they rejected). The API and the worker refuse such bodies up front.
 */

/** Deeper than any legitimate body; far below what overflows the stack. */
export const MAX_JSON_DEPTH = 64

/** Whether JSON text nests arrays and objects deeper than MAX_JSON_DEPTH (one pass, strings skipped). */
export const nestedTooDeep = (text: string): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}
