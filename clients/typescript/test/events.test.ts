// The live-update reader: a stream split at any byte still gives whole events; a reconnect sends
// Last-Event-ID of the last event seen (so the server replays only what was missed); a refusal
// (403: not your patient) ends the stream with an error instead of retrying for ever.
import assert from "node:assert/strict";
import { test } from "node:test";

import { watchPanel } from "../examples/clinician.js";
import { parseEventStream, streamEvents, type FeedEvent } from "../src/index.js";

function body(chunks: string[]): ReadableStream<Uint8Array> {
  const bytes = chunks.map((c) => new TextEncoder().encode(c));
  return new ReadableStream({
    pull(controller) {
      const next = bytes.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

const event = (id: number, type: string) =>
  `event: ${type}\r\ndata: ${JSON.stringify({ id, type, patient_id: "p" })}\r\nid: ${id}\r\n\r\n`;

test("events split anywhere are parsed whole; comments and retry are handled", async () => {
  const text = `retry: 1\n\n: heartbeat\n\n${event(7, "escalation.opened")}data: a\ndata: b\n\n`;
  const chunks = text.match(/.{1,5}/gs) ?? [];
  const got = [];
  for await (const m of parseEventStream(body(chunks))) got.push(m);
  assert.deepEqual(
    got.map((m) => [m.id, m.event, m.retry]),
    [
      [undefined, "message", 1],
      ["7", "escalation.opened", undefined],
      ["7", "message", undefined],
    ],
  );
  assert.equal(got[2]?.data, "a\nb");
});

test("a reconnect resumes after the last event seen; a 403 ends the stream", async () => {
  const asked: (string | null)[] = [];
  const answers = [
    () => new Response(body(["retry: 1\n\n", event(41, "feed.ready"), event(42, "escalation.opened")])),
    () => new Response(body([event(43, "escalation.acknowledged")])),
    () => new Response(null, { status: 403 }),
  ];
  const fetch = async (request: Request): Promise<Response> => {
    assert.equal(request.headers.get("Accept"), "text/event-stream");
    assert.equal(request.headers.get("Authorization"), "Bearer tok");
    asked.push(request.headers.get("Last-Event-ID"));
    const answer = answers.shift();
    assert.ok(answer, "no more answers");
    return answer();
  };
  const seen: FeedEvent[] = [];
  await assert.rejects(
    watchPanel({ baseUrl: "http://gateway.test", token: () => "tok", lastEventId: "40", fetch }, (e) =>
      seen.push(e),
    ),
    /403/,
  );
  assert.deepEqual(asked, ["40", "42", "43"]);
  assert.deepEqual(
    seen.map((e) => [e.id, e.type]),
    [
      [42, "escalation.opened"],
      [43, "escalation.acknowledged"],
    ],
  );
});

test("a patient's stream is the patient's path", async () => {
  const paths: string[] = [];
  const controller = new AbortController();
  const fetch = async (request: Request): Promise<Response> => {
    paths.push(new URL(request.url).pathname);
    controller.abort();
    return new Response(body([event(1, "dose.changed")]));
  };
  const events = streamEvents("/api/notifications/patients/abc/events", {
    baseUrl: "http://gateway.test",
    token: () => "tok",
    signal: controller.signal,
    fetch,
  });
  for await (const e of events) assert.equal(e.type, "dose.changed");
  assert.deepEqual(paths, ["/api/notifications/patients/abc/events"]);
});
