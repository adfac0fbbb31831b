/**
 * An HTTP error a handler throws: its status, the message the client reads, extra headers. In its own
 * file (no zod) so the agent's handlers can throw it without loading the request-body validation
 * (core/http/json-body.ts) at start: the gateway's memory (docs/benchmarks.md, fan-out).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
