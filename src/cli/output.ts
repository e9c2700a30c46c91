/**
 * Where hmmsim's words go. stdout carries the report (and help): a reader that closes the pipe early
 * (EPIPE) ends the writing quietly, as a Unix filter stops when its reader has gone; any other write
 * error is kept as one line naming what failed, where and the errno, for the caller to print and
 * exit on ("hmmsim: writing the report to stdout: no space left on device (ENOSPC)"). stderr carries
 * progress and those lines; when stderr itself cannot be written there is nowhere left to say so,
 * and its errors are dropped.
 */
import { writeSync } from "node:fs";
import { isatty } from "node:tty";
import { getSystemErrorMap } from "node:util";

/** Set once stdout's reader has gone: nothing more is written. */
let stdoutClosed = false;
/** The first write error on stdout other than a closed pipe, as the line to print. */
let stdoutFailure: string | null = null;
/** Writes not yet finished: settleStdout waits for them. */
const stdoutPending = new Set<Promise<void>>();
let stdoutGuarded = false;

/** "no space left on device (ENOSPC)", from libuv's own table for the error's errno. */
export function describeErrno(error: NodeJS.ErrnoException): string {
  const entry = typeof error.errno === "number" ? getSystemErrorMap().get(error.errno) : undefined;
  const name = entry?.[0] ?? error.code;
  const text = entry?.[1] ?? error.message;
  return name === undefined ? text : `${text} (${name})`;
}

/**
 * Queues `text` for stdout; `what` names it in an error line ("the report", "the help"). Errors come
 * back through the write's callback; the stream's 'error' event, which Node would otherwise turn into
 * an uncaught exception and a stack trace, is listened to and left to the callback.
 */
export function writeStdout(text: string, what: string): void {
  if (stdoutClosed || stdoutFailure !== null) return;
  if (!stdoutGuarded) {
    process.stdout.on("error", () => {});
    stdoutGuarded = true;
  }
  const written = new Promise<void>((resolve) => {
    process.stdout.write(text, (error) => {
      if (error !== null && error !== undefined && !stdoutClosed && stdoutFailure === null) {
        if ((error as NodeJS.ErrnoException).code === "EPIPE") stdoutClosed = true;
        else stdoutFailure = `hmmsim: writing ${what} to stdout: ${describeErrno(error)}`;
      }
      resolve();
    });
  });
  stdoutPending.add(written);
  void written.then(() => stdoutPending.delete(written));
}

/** Waits for every write queued so far; the line saying why stdout failed, or null if it did not. */
export async function settleStdout(): Promise<string | null> {
  await Promise.all([...stdoutPending]);
  return stdoutFailure;
}

/**
 * Writes to stderr at once (synchronously, so a line written just before process.exit is not lost),
 * dropping the text if stderr cannot take it.
 */
export function writeStderr(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // stderr is closed or full: there is nowhere left to report it.
  }
}

/** Whether stderr is a terminal, asked of the descriptor so that process.stderr is never created. */
export const stderrIsTerminal = isatty(2);

/** True while a progress line is on the terminal without its newline. */
let progressLineOpen = false;

/** Reports a phase starting: on a terminal one line rewritten in place; otherwise a plain line. */
export function reportProgress(line: string): void {
  if (stderrIsTerminal) {
    writeStderr(`\r\x1b[K${line}`);
    progressLineOpen = true;
  } else writeStderr(`${line}\n`);
}

/** Clears a progress line left on the terminal, so that what follows starts at column 0. */
export function endProgress(): void {
  if (!progressLineOpen) return;
  writeStderr("\r\x1b[K");
  progressLineOpen = false;
}
