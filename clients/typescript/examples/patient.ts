// A patient's flow, as a patient app calls it: submit a symptom report, then read the taper and its
// plan. `make client` type-checks it (tsc) and runs it against a scripted gateway (test/flows.test.ts).
import { unwrap, type Schema, type TaperClient } from "../src/index.js";

export async function submitReport(
  client: TaperClient,
  patientId: string,
): Promise<Schema<"SymptomReportOut">> {
  const report = await unwrap(
    "submitSymptomReport",
    client.POST("/api/monitoring/patients/{patient_id}/symptom-reports", {
      params: {
        path: { patient_id: patientId },
        // The same key on a retry returns the first answer (replayed: true), never a second report.
        header: { "idempotency-key": crypto.randomUUID() },
      },
      body: {
        instrument: "gad-7",
        instrument_version: "1",
        answers: { item_1: 1, item_2: 0, item_3: 1, item_4: 0, item_5: 0, item_6: 1, item_7: 0 },
        red_flags: [],
      },
    }),
  );
  if (report.severity === "RED") {
    // A red report pages the on-call clinician and holds the taper; the app says so at once.
    console.info(`report ${report.report_id}: a clinician has been paged`);
  }
  return report;
}

export async function readPlan(
  client: TaperClient,
  patientId: string,
): Promise<{ taper: Schema<"TaperOut">; plan: Schema<"PlanRecordOut"> }> {
  const taper = await unwrap(
    "getTaper",
    client.GET("/api/scheduler/patients/{patient_id}/taper", {
      params: { path: { patient_id: patientId } },
    }),
  );
  const plan = await unwrap(
    "getPlan",
    client.GET("/api/scheduler/patients/{patient_id}/plans/{plan_id}", {
      params: { path: { patient_id: patientId, plan_id: taper.plan_id } },
    }),
  );
  return { taper, plan };
}

export async function patientFlow(client: TaperClient, patientId: string): Promise<string> {
  const report = await submitReport(client, patientId);
  const { taper, plan } = await readPlan(client, patientId);
  const held = taper.held ? ` (held: ${taper.held_reason ?? "by a clinician"})` : "";
  return (
    `score ${report.total_score} (${report.band}); today ${taper.current_daily_dose_mg} mg` +
    `${held}; plan ${plan.status}, ${plan.steps.length} steps`
  );
}
