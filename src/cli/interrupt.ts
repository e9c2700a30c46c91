/**
 * SIGINT ends a run with one line on stderr and exit status 130. The model runs in a worker thread
 * (run_in_worker.ts), so this thread's event loop is idle and runs the listener as soon as the signal
 * comes, however long the run. The listener ends the process before it returns: when a second SIGINT
 * comes (a terminal's ^C reaches the whole process group, and bin/hmmsim.js forwards its own copy),
 * no listener runs for it, and the line is printed once.
 */
import { EXIT } from "./exit_status.js";
import { endProgress, writeStderr } from "./output.js";

export const INTERRUPTED_LINE = "hmmsim: interrupted\n";

export function installInterruptHandler(): void {
  process.on("SIGINT", () => {
    endProgress();
    writeStderr(INTERRUPTED_LINE);
    process.exit(EXIT.interrupted);
  });
}
