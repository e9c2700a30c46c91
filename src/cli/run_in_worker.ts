/**
 * Runs a job (job.ts) in a worker thread. The model runs synchronously for as long as the run takes
 * (seconds for `demo --pages 4194304 --store tokens`), and Node runs a signal's listeners only from
 * the event loop, so a model running in the main thread would hold off SIGINT until it finished. In
 * a worker the main thread's loop stays idle and the SIGINT handler (interrupt.ts) runs at once,
 * while the model itself stays deterministic: nothing about its run changes.
 */
import { Worker } from "node:worker_threads";
import type { Job, JobMessage } from "./job.js";

export interface JobResult {
  text: string;
  checksHeld: boolean;
  /** The job refused its arguments: this line goes to stderr and the run ends with the usage status. */
  usage?: string;
}

/**
 * Starts worker.ts. Run from the TypeScript sources (under tsx), the worker does not inherit the
 * main thread's loader hooks, so it registers tsx's before importing the entry; built to JavaScript,
 * it imports the entry directly.
 */
function startWorker(): Worker {
  return startModuleWorker("worker");
}

/** Starts the worker thread whose entry is `name`.ts (or .js, built) beside this file. */
export function startModuleWorker(name: string): Worker {
  const fromSources = import.meta.url.endsWith(".ts");
  const entry = new URL(fromSources ? `./${name}.ts` : `./${name}.js`, import.meta.url);
  if (!fromSources) return new Worker(entry);
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const bootstrap =
    `import(${JSON.stringify(tsxApi)})` +
    `.then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true });
}

/** A worker started ahead of its job. */
interface StartedWorker {
  worker: Worker;
  onPhase: (name: string, index: number, count: number) => void;
  /** Settles when the worker exits: with its result, or with why it has none. */
  ended: Promise<JobResult>;
}

let early: StartedWorker | null = null;

function start(): StartedWorker {
  const worker = startWorker();
  const started: Omit<StartedWorker, "ended"> = { worker, onPhase: () => {} };
  const ended = new Promise<JobResult>((resolve, reject) => {
    let result: JobResult | null = null;
    worker.on("message", (message: JobMessage) => {
      if (message.kind === "phase") started.onPhase(message.name, message.index, message.count);
      else if (message.kind === "progress") started.onPhase(message.line, -1, 0);
      else if (message.kind === "usage") result = { text: "", checksHeld: false, usage: message.line };
      else result = { text: message.text, checksHeld: message.checksHeld };
    });
    worker.on("error", reject);
    // Settled on exit rather than on the message, so that the worker is gone when the report is
    // written and the process can end as soon as stdout has taken it.
    worker.on("exit", (code) => {
      if (result !== null) resolve(result);
      else reject(new Error(`the worker thread exited with code ${code} before it reported a result`));
    });
  });
  return Object.assign(started, { ended });
}

/**
 * Starts the worker now, so that it loads tsx and the model while the command line is parsed. It
 * waits for a job and does not keep the process alive: a run that ends without one (--help, a usage
 * error) ends at once.
 */
export function startWorkerEarly(): void {
  if (early !== null) return;
  early = start();
  early.worker.unref();
  // A worker that fails to boot is reported to the job that uses it, if any.
  early.ended.catch(() => {});
}

/**
 * Runs `job` to its end in the early worker (or a new one); `onPhase` hears each phase as it starts,
 * and a free-form progress line (explore's) as a phase with index -1.
 * Rejects with the worker's exception if the model threw one (a bug), or if the worker ended without
 * reporting.
 */
export function runInWorker(
  job: Job,
  onPhase: (name: string, index: number, count: number) => void,
): Promise<JobResult> {
  const started = early ?? start();
  early = null;
  started.onPhase = onPhase;
  started.worker.ref();
  started.worker.postMessage(job);
  return started.ended;
}
