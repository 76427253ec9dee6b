/** A failure the command line reports as one clear line (and exit code 1). */
import { Data } from "effect"

export class CliError extends Data.TaggedError("CliError")<{ readonly message: string }> {}
