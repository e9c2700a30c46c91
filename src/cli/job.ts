/**
 * What a command asks the model to do, run in a worker thread (see run_in_worker.ts) so that the
 * main thread stays free to answer SIGINT. The job comes back as the finished text to print and
 * whether its checks held; the exit status follows from that in main.ts.
 */
import type { ProtocolVersion } from "../mm/kernel.js";
import type { StoreKind } from "../mm/page_store.js";
import { conformanceHeld, formatConformance, runConformance } from "./conformance.js";
import { formatDemo, runDemo } from "./demo.js";
import { type ExploreJob, ExploreUsageError, runExploreJob } from "./explore.js";

export type Job =
  | {
      command: "demo";
      protocol: ProtocolVersion;
      pages: number;
      store: StoreKind;
      json: boolean;
      /** Report each phase as it starts (long runs). */
      progress: boolean;
    }
  | { command: "conformance"; json: boolean }
  | ExploreJob;

export type JobMessage =
  | { kind: "phase"; name: string; index: number; count: number }
  | { kind: "progress"; line: string }
  | { kind: "done"; text: string; checksHeld: boolean }
  /** The command line asked for something that cannot be done: one line for stderr, the usage status. */
  | { kind: "usage"; line: string };

/** Runs `job` to the end, telling `post` of each phase and, last, of the result. */
export async function runJob(job: Job, post: (message: JobMessage) => void): Promise<void> {
  if (job.command === "demo") {
    const report = runDemo({
      protocol: job.protocol,
      pages: job.pages,
      store: job.store,
      onPhase: job.progress ? (name, index, count) => post({ kind: "phase", name, index, count }) : undefined,
    });
    const text = job.json ? JSON.stringify(report, null, 2) : formatDemo(report);
    post({ kind: "done", text: `${text}\n`, checksHeld: report.checksHeld });
    return;
  }
  if (job.command === "explore") {
    try {
      const outcome = await runExploreJob(job, (line) => post({ kind: "progress", line }));
      post({ kind: "done", text: outcome.text, checksHeld: outcome.checksHeld });
    } catch (error) {
      if (!(error instanceof ExploreUsageError)) throw error;
      post({ kind: "usage", line: error.message });
    }
    return;
  }
  const report = await runConformance();
  const text = job.json ? JSON.stringify(report, null, 2) : formatConformance(report);
  post({ kind: "done", text: `${text}\n`, checksHeld: conformanceHeld(report) });
}
