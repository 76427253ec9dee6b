/**
 * Cuts text to at most `max` UTF-16 units without splitting a surrogate pair,
 * and replaces any lone surrogate with U+FFFD. Text bound for the wire (AMQP
 * headers, logs) must be well-formed: V8 names a JSON syntax error's token by
 * its first unit, so a body with an emoji there gives a message with a lone
 * surrogate, which the UTF-8 encoder would turn into U+FFFD on the way out and
 * the reason read back would not be the one written.
 */
export const clip = (text: string, max: number): string => {
  let cut = text.length > max ? text.slice(0, max) : text
  // A high surrogate last means its pair was cut off.
  const last = cut.charCodeAt(cut.length - 1)
  if (cut.length < text.length && last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1)
  return cut.isWellFormed() ? cut : cut.toWellFormed()
}
