// The taper API client: openapi-fetch over the generated types in ./taper.ts. Every path, parameter,
// body and response is checked by tsc against the merged OpenAPI document, so an API change that
// breaks a caller breaks its build instead of its users.
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { components, operations, paths } from "./taper.js";

export type { components, operations, paths };

/** A schema of the document by name, e.g. `Schema<"EscalationOut">`. */
export type Schema<Name extends keyof components["schemas"]> = components["schemas"][Name];

/** Every refusal (4xx/5xx) has this shape: `detail` names the field or the reason. */
export type ErrorBody = Schema<"ErrorBody">;

/** JSON only: an operation that can also answer FHIR or SVG (`format=`) is typed by its JSON body. */
export type TaperClient = Client<paths, "application/json">;

export interface TaperClientOptions {
  /** The gateway's origin, e.g. `http://127.0.0.1:8080`; "" for the page's own origin. */
  baseUrl: string;
  /** Returns the current bearer token (called per request, so a refreshed token is used). */
  token: () => string | Promise<string>;
  /** A fetch of your own (tests, retries); defaults to globalThis.fetch. */
  fetch?: (input: Request) => Promise<Response>;
}

/** A typed client for every service behind the gateway (paths start with `/api/<service>/`). */
export function createTaperClient(options: TaperClientOptions): TaperClient {
  const client = createClient<paths, "application/json">({
    baseUrl: options.baseUrl,
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  });
  const auth: Middleware = {
    async onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${await options.token()}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** The next page's cursor of a paginated list (the `X-Next-Cursor` header), or undefined at the end. */
export function nextCursor(response: Response): string | undefined {
  return response.headers.get("X-Next-Cursor") ?? undefined;
}

/** A refusal: the operation, the HTTP status and the API's `ErrorBody` (when it sent one). */
export class ApiError extends Error {
  constructor(
    readonly operation: string,
    readonly status: number,
    readonly body: ErrorBody | undefined,
  ) {
    super(`${operation}: ${status} ${describe(body)}`);
    this.name = "ApiError";
  }
}

function describe(body: ErrorBody | undefined): string {
  if (body === undefined) return "(no body)";
  if (typeof body.detail === "string") return body.detail;
  // A validation refusal names each field: ["body", "instrument"]: "Input should be ..."
  return body.detail.map((field) => `${field.loc.join(".")}: ${field.msg}`).join("; ");
}

function isErrorBody(value: unknown): value is ErrorBody {
  return typeof value === "object" && value !== null && "detail" in value;
}

/**
 * The body of a successful call, or an ApiError. For operations that answer with a body; use the
 * call's own `{ data, error, response }` where you need headers (X-Next-Cursor, ETag) or a 204.
 */
export async function unwrap<T>(
  operation: string,
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || data === undefined) {
    throw new ApiError(operation, response.status, isErrorBody(error) ? error : undefined);
  }
  return data;
}

export { parseEventStream, streamEvents, type FeedEvent, type FeedPath, type SseMessage, type StreamOptions } from "./events.js";
