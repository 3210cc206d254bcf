// The examples run, not only compile: each flow against a scripted gateway (a fetch that answers
// like the services do), checking what goes over the wire: the bearer token, path parameters, the
// query of a paginated list and its cursor, JSON bodies, the Idempotency-Key, and refusals.
// Answers are plain JSON on purpose: they are the wire, not the types tsc already checks.
import assert from "node:assert/strict";
import { test } from "node:test";

import { acknowledge, clinicianFlow, resolveKeepingHeld } from "../examples/clinician.js";
import { patientFlow, submitReport } from "../examples/patient.js";
import { ApiError, createTaperClient, type TaperClient } from "../src/index.js";

const PATIENT = "0b6f9a52-3c1e-4d8e-9a51-2f3c4d5e6f70";
const PLAN = "1c7e8b63-4d2f-4e9f-8b62-3a4b5c6d7e81";
const ESCALATIONS = ["2d8f9c74-5e3a-4fa0-9c73-4b5c6d7e8f92", "3e9a0d85-6f4b-4ab1-8d84-5c6d7e8f9aa3"];
const EPISODE = "4fab1e96-7a5c-4bc2-9e95-6d7e8f9aabb4";

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: unknown;
}
interface Answer {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}

function gateway(routes: Record<string, (seen: Seen) => Answer>): {
  client: TaperClient;
  seen: Seen[];
} {
  const seen: Seen[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const text = await request.text();
    const entry: Seen = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      body: text === "" ? undefined : JSON.parse(text),
    };
    seen.push(entry);
    const route = routes[`${request.method} ${url.pathname}`];
    const answer: Answer = route?.(entry) ?? { status: 404, body: { detail: "Not Found" } };
    return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { "Content-Type": "application/json", ...answer.headers },
    });
  };
  return { client: createTaperClient({ baseUrl: "http://gateway.test", token: () => "tok", fetch }), seen };
}

const escalation = (id: string) => ({ id, episode_id: EPISODE, patient_id: PATIENT, status: "triggered" });

test("a patient submits a report and reads the taper and its plan", async () => {
  const { client, seen } = gateway({
    [`POST /api/monitoring/patients/${PATIENT}/symptom-reports`]: () => ({
      status: 201,
      body: { report_id: ESCALATIONS[0], total_score: 3, band: "minimal", severity: null },
    }),
    [`GET /api/scheduler/patients/${PATIENT}/taper`]: () => ({
      body: { plan_id: PLAN, held: true, held_reason: null, current_daily_dose_mg: "9" },
    }),
    [`GET /api/scheduler/patients/${PATIENT}/plans/${PLAN}`]: () => ({
      body: { id: PLAN, status: "approved", steps: [{}, {}, {}] },
    }),
  });

  const summary = await patientFlow(client, PATIENT);

  assert.equal(summary, "score 3 (minimal); today 9 mg (held: by a clinician); plan approved, 3 steps");
  assert.deepEqual(
    seen.map((s) => `${s.method} ${s.path}`),
    [
      `POST /api/monitoring/patients/${PATIENT}/symptom-reports`,
      `GET /api/scheduler/patients/${PATIENT}/taper`,
      `GET /api/scheduler/patients/${PATIENT}/plans/${PLAN}`,
    ],
  );
  const [report] = seen;
  assert.ok(report !== undefined);
  assert.equal(report.headers.get("authorization"), "Bearer tok");
  assert.match(report.headers.get("idempotency-key") ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(report.headers.get("content-type"), "application/json");
  assert.deepEqual(report.body, {
    instrument: "gad-7",
    instrument_version: "1",
    answers: { item_1: 1, item_2: 0, item_3: 1, item_4: 0, item_5: 0, item_6: 1, item_7: 0 },
    red_flags: [],
  });
  assert.ok(seen.every((s) => s.headers.get("authorization") === "Bearer tok"));
});

test("a clinician pages through open escalations, acknowledges, resolves and resumes", async () => {
  const { client, seen } = gateway({
    "GET /api/notifications/escalations": ({ query }) =>
      query.get("cursor") === "page-2"
        ? { body: [escalation(ESCALATIONS[1] ?? "")] }
        : { body: [escalation(ESCALATIONS[0] ?? "")], headers: { "X-Next-Cursor": "page-2" } },
    [`POST /api/notifications/escalations/${ESCALATIONS[0]}/acknowledge`]: () => ({
      body: { escalation_id: ESCALATIONS[0], episode_id: EPISODE, status: "acknowledged" },
    }),
    [`POST /api/monitoring/patients/${PATIENT}/episodes/${EPISODE}/resolve`]: () => ({
      body: { id: EPISODE, status: "resolved" },
    }),
    [`POST /api/scheduler/patients/${PATIENT}/taper/resume`]: () => ({
      body: { plan_id: PLAN, held: false },
    }),
  });

  const summary = await clinicianFlow(client);

  assert.equal(
    summary,
    `2 open; acknowledged ${ESCALATIONS[0]} (acknowledged), episode resolved, taper held: false`,
  );
  const [page1, page2, ack, resolve, resume] = seen;
  assert.equal(page1?.query.toString(), "status=open&limit=200");
  assert.equal(page2?.query.toString(), "status=open&limit=200&cursor=page-2");
  assert.equal(ack?.body, undefined);
  assert.deepEqual(resolve?.body, {
    resolution: "keep_held",
    note: "Seen in clinic; resume after the review.",
  });
  assert.deepEqual(resume?.body, { reason_code: "withdrawal" });
  assert.equal(seen.length, 5);
});

test("a refusal becomes an ApiError naming the field", async () => {
  const { client } = gateway({
    [`POST /api/monitoring/patients/${PATIENT}/episodes/${EPISODE}/resolve`]: () => ({
      status: 409,
      body: { detail: "The episode is already resolved.", request_id: "req-1" },
    }),
    [`POST /api/notifications/escalations/${ESCALATIONS[0]}/acknowledge`]: () => ({
      status: 422,
      body: {
        detail: [{ loc: ["path", "escalation_id"], msg: "Input should be a valid UUID", type: "uuid" }],
      },
    }),
    // submitSymptomReport's 422 is documented without a body schema: the error has no body.
    [`POST /api/monitoring/patients/${PATIENT}/symptom-reports`]: () => ({ status: 422 }),
  });
  const first = escalation(ESCALATIONS[0] ?? "") as Parameters<typeof acknowledge>[1];

  await assert.rejects(resolveKeepingHeld(client, first), (error: unknown) => {
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 409);
    assert.equal(error.message, "resolveEpisode: 409 The episode is already resolved.");
    return true;
  });
  await assert.rejects(acknowledge(client, first), {
    name: "ApiError",
    message: "acknowledgeEscalation: 422 path.escalation_id: Input should be a valid UUID",
  });
  await assert.rejects(submitReport(client, PATIENT), {
    message: "submitSymptomReport: 422 (no body)",
  });
});
