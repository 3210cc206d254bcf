// Live updates (server-sent events) with the bearer token: a browser's EventSource cannot send an
// Authorization header, so this reads the stream with fetch. It resumes where it stopped: each
// reconnect sends Last-Event-ID, and the server replays exactly the events after it (the feed is
// durable), so a dropped connection or a server restart loses nothing.
import type { components } from "./taper.js";

/** One event of a clinician's or a patient's feed (`data:` of the stream, `FeedEventOut`). */
export type FeedEvent = components["schemas"]["FeedEventOut"];

/** The two streams: the caller's panel (clinician), or one patient's (patient or their clinician). */
export type FeedPath =
  | "/api/notifications/clinicians/me/events"
  | `/api/notifications/patients/${string}/events`;

export interface StreamOptions {
  baseUrl: string;
  token: () => string | Promise<string>;
  /** Resume after this event id (e.g. one kept from a previous session). */
  lastEventId?: string;
  /** Stops the stream (an AbortController's signal). */
  signal?: AbortSignal;
  fetch?: (input: Request) => Promise<Response>;
}

/** A parsed server-sent event (WHATWG HTML "event stream interpretation"). */
export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
  retry: number | undefined;
}

/** Splits a text/event-stream body into its events; comments (`: heartbeat`) are skipped. */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder(); // stream: true keeps a character split across chunks whole
  let buffer = "";
  let id: string | undefined;
  let event = "";
  let data: string[] = [];
  let retry: number | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (data.length > 0 || retry !== undefined) {
          yield { id, event: event || "message", data: data.join("\n"), retry };
        }
        event = "";
        data = [];
        retry = undefined;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "data") data.push(text);
      else if (field === "event") event = text;
      else if (field === "id" && !text.includes("\0")) id = text;
      else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
    }
  }
}

/**
 * Every event of the feed, for as long as the caller iterates and the signal allows: reconnects
 * when the server ends the stream (it does every few minutes, so the token is checked again) or
 * the connection drops, after the server's `retry:` delay, resuming after the last event seen.
 * A 4xx other than 429 (signed out, not your patient) ends it with an error.
 */
export async function* streamEvents(path: FeedPath, options: StreamOptions): AsyncGenerator<FeedEvent> {
  const fetcher = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  let lastEventId = options.lastEventId;
  let retryMs = 3000;
  while (!options.signal?.aborted) {
    const headers = new Headers({
      Accept: "text/event-stream",
      Authorization: `Bearer ${await options.token()}`,
    });
    if (lastEventId !== undefined) headers.set("Last-Event-ID", lastEventId);
    let response: Response | undefined;
    try {
      response = await fetcher(
        new Request(`${options.baseUrl}${path}`, {
          headers,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        }),
      );
    } catch {
      if (options.signal?.aborted) return;
      response = undefined; // the network: try again after the delay
    }
    if (response !== undefined) {
      if (response.status >= 400 && response.status < 500 && response.status !== 429) {
        throw new Error(`event stream ${path}: ${response.status}`);
      }
      if (response.ok && response.body !== null) {
        try {
          for await (const message of parseEventStream(response.body)) {
            if (message.retry !== undefined) retryMs = message.retry;
            if (message.id !== undefined) lastEventId = message.id;
            if (message.data === "" || message.event === "feed.ready") continue;
            yield JSON.parse(message.data) as FeedEvent;
          }
        } catch {
          if (options.signal?.aborted) return;
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
}
