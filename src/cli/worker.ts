/** The worker thread's entry (started by run_in_worker.ts): runs the job it is sent and reports back. */
import { parentPort } from "node:worker_threads";
import { type Job, runJob } from "./job.js";

const port = parentPort;
if (port === null) throw new Error("src/cli/worker.ts runs only as a worker thread");
// The job comes as the first message: the worker is started before the command line is parsed.
const job = await new Promise<Job>((received) => port.once("message", received));
await runJob(job, (message) => port.postMessage(message));
