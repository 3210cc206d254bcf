// A clinician's flow, as a clinician console calls it: list the panel's open escalations (every page),
// acknowledge one, resolve its episode keeping the taper held, then resume the taper after review.
// `make client` type-checks it (tsc) and runs it against a scripted gateway (test/flows.test.ts).
import {
  ApiError,
  nextCursor,
  streamEvents,
  unwrap,
  type FeedEvent,
  type Schema,
  type StreamOptions,
  type TaperClient,
} from "../src/index.js";

type Escalation = Schema<"EscalationOut">;

/** Every open escalation of my panel, following X-Next-Cursor until the last page. */
export async function listOpenEscalations(client: TaperClient): Promise<Escalation[]> {
  const all: Escalation[] = [];
  let cursor: string | undefined;
  do {
    const { data, error, response } = await client.GET("/api/notifications/escalations", {
      params: { query: { status: "open", limit: 200, ...(cursor === undefined ? {} : { cursor }) } },
    });
    if (error !== undefined) throw new ApiError("listEscalations", response.status, error);
    all.push(...data);
    cursor = nextCursor(response);
  } while (cursor !== undefined);
  return all;
}

export async function acknowledge(
  client: TaperClient,
  escalation: Escalation,
): Promise<Schema<"AcknowledgeOut">> {
  return unwrap(
    "acknowledgeEscalation",
    client.POST("/api/notifications/escalations/{escalation_id}/acknowledge", {
      params: { path: { escalation_id: escalation.id } },
    }),
  );
}

export async function resolveKeepingHeld(
  client: TaperClient,
  escalation: Escalation,
): Promise<Schema<"EpisodeOut">> {
  return unwrap(
    "resolveEpisode",
    client.POST("/api/monitoring/patients/{patient_id}/episodes/{episode_id}/resolve", {
      params: { path: { patient_id: escalation.patient_id, episode_id: escalation.episode_id } },
      // keep_held closes the episode but the taper stays held until resumeTaper below
      // (resume_taper would lift monitoring's hold in the same step).
      body: { resolution: "keep_held", note: "Seen in clinic; resume after the review." },
    }),
  );
}

export async function resume(client: TaperClient, patientId: string): Promise<Schema<"TaperOut">> {
  return unwrap(
    "resumeTaper",
    client.POST("/api/scheduler/patients/{patient_id}/taper/resume", {
      params: { path: { patient_id: patientId } },
      body: { reason_code: "withdrawal" },
    }),
  );
}

export async function clinicianFlow(client: TaperClient): Promise<string> {
  const open = await listOpenEscalations(client);
  const first = open[0]; // noUncheckedIndexedAccess: Escalation | undefined
  if (first === undefined) return "nothing open";
  const ack = await acknowledge(client, first);
  const episode = await resolveKeepingHeld(client, first);
  const taper = await resume(client, first.patient_id);
  return (
    `${open.length} open; acknowledged ${ack.escalation_id} (${ack.status}), ` +
    `episode ${episode.status}, taper held: ${taper.held}`
  );
}

/**
 * The console's live view: new, rising, acknowledged and resolved escalations of my panel as they
 * happen (server-sent events), instead of polling listEscalations. Stops when `signal` aborts.
 */
export async function watchPanel(
  options: StreamOptions,
  onEscalation: (event: FeedEvent) => void,
): Promise<void> {
  for await (const event of streamEvents("/api/notifications/clinicians/me/events", options)) {
    if (event.type.startsWith("escalation.")) onEscalation(event);
  }
}
