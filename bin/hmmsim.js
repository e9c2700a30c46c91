#!/usr/bin/env node
// What `npx hmmsim` runs. Two ways, chosen by what is beside this file:
//
// - The installed package (no src/, or no tsx: the package ships dist/ and needs no devDependency):
//   the built CLI, dist/cli/main.js, imported into this process by plain node. Nothing to relay.
// - A clone of the repository (src/cli/main.ts and tsx are there): the TypeScript sources under tsx,
//   whether or not a build exists. So a developer, and the tests in test/cli that spawn this file,
//   always run the sources as they are now, never a dist/ left over from an earlier `npm run build`;
//   a clone needs no build step. (`node dist/cli/main.js` runs a build directly.)
//
// From the sources the child is node itself (`node --import tsx`), not tsx's own command, whose signal
// relay SIGKILLs a child that has not acknowledged a SIGINT within some 60 ms.
//
// What the child ends with comes through unchanged: its exit status, or the signal that killed it.
// SIGINT, SIGTERM and SIGHUP reach the child whether they were sent to the whole process group (a
// terminal's ^C: the child gets its own copy, and the forwarded one finds it gone or exiting) or to
// this process alone (forwarded). The child says "hmmsim: interrupted" and exits 130 itself; only a
// child that SIGINT killed before it could answer (while it was starting) leaves the line to us.
import { spawn } from "node:child_process";
import { existsSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const sources = join(here, "..", "src", "cli", "main.ts");
const built = join(here, "..", "dist", "cli", "main.js");
const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"];
const EXIT_INTERNAL = 4;
const EXIT_INTERRUPTED = 130;

function say(line) {
  try {
    writeSync(2, `${line}\n`);
  } catch {
    // stderr is gone: nowhere to say it.
  }
}

/** tsx's loader, or null where it is not installed (the package without its devDependencies). */
function tsxLoader() {
  try {
    return pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  } catch {
    return null;
  }
}

const loader = existsSync(sources) ? tsxLoader() : null;
if (loader === null) {
  if (!existsSync(built)) {
    say(`hmmsim: ${built} is missing: run \`npm run build\` (or \`npm install\` tsx to run the sources)`);
    process.exit(EXIT_INTERNAL);
  }
  // The built CLI sets process.exitCode and installs its own SIGINT handler, as when run directly.
  await import(pathToFileURL(built).href);
} else {
  runSources(loader);
}

function runSources(loader) {
  const child = spawn(process.execPath, ["--import", loader, sources, ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  for (const signal of FORWARDED_SIGNALS) {
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
  }
  child.on("error", (error) => {
    say(`hmmsim: starting ${process.execPath}: ${error.message}`);
    process.exit(EXIT_INTERNAL);
  });
  child.on("exit", (code, signal) => {
    if (code !== null) process.exit(code);
    if (signal === "SIGINT") {
      say("hmmsim: interrupted");
      process.exit(EXIT_INTERRUPTED);
    }
    // Die of the same signal, so that the shell reports it as it would have for the child.
    for (const forwarded of FORWARDED_SIGNALS) process.removeAllListeners(forwarded);
    process.kill(process.pid, signal);
    // A signal that does not end a process by default (or one we cannot raise): the shell's number.
    process.exit(128 + (constants.signals[signal] ?? 0));
  });
}
