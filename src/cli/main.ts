/**
 * The hmmsim command: `demo` (what `npm start` runs) and `conformance`. Bad arguments get one line
 * naming the argument, never a stack trace. The exit status says how the run ended (exit_status.ts,
 * listed by --help); the model runs in a worker thread so that SIGINT is answered at once
 * (run_in_worker.ts, interrupt.ts), and stdout's errors end the run as output.ts describes.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { PROTOCOL_VERSIONS, type ProtocolVersion } from "../mm/kernel.js";
import type { StoreKind } from "../mm/page_store.js";
import { EXIT, EXIT_STATUS_HELP, type ExitStatus } from "./exit_status.js";
import { installInterruptHandler } from "./interrupt.js";
import type { Job } from "./job.js";
import {
  endProgress,
  reportProgress,
  settleStdout,
  stderrIsTerminal,
  writeStderr,
  writeStdout,
} from "./output.js";
import { runInWorker, startWorkerEarly } from "./run_in_worker.js";

function packageVersion(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

/** The bytes store keeps real frames: the demo needs about 3 bytes of host memory per byte of buffer. */
const BYTES_STORE_PAGES_MAX = 2 ** 18;

/** Runs this long (in pages) report each phase on stderr as it starts. */
const LONG_RUN_PAGES = 65536;

/** A whole number from `min` to `max`, for commander. */
function integerArgument(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}.`);
    return n;
  };
}

function secondsArgument(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0) || n > 86400)
    throw new InvalidArgumentError("must be a number of seconds above 0 and at most 86400.");
  return n;
}

/** Progress of a search: every second on a terminal (rewritten in place), every ten otherwise. */
const EXPLORE_PROGRESS_MS = stderrIsTerminal ? 1000 : 10_000;

function parsePagesArgument(value: string): number {
  const pages = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(pages) || pages < 1 || pages > 2 ** 22) {
    throw new InvalidArgumentError("must be a whole number of pages from 1 to 4194304.");
  }
  return pages;
}

/** Runs `job` in the worker, prints its report, and gives the status its checks call for. */
async function execute(job: Job): Promise<ExitStatus> {
  try {
    const result = await runInWorker(job, (name, index, count) =>
      reportProgress(index < 0 ? name : `hmmsim ${job.command}: phase ${index + 1} of ${count}: ${name}`),
    );
    endProgress();
    if (result.usage !== undefined) {
      writeStderr(`hmmsim: ${result.usage}\n`);
      return EXIT.usage;
    }
    writeStdout(result.text, "the report");
    return result.checksHeld ? EXIT.ok : EXIT.checksFailed;
  } catch (error) {
    endProgress();
    writeStderr(`hmmsim: internal error: ${describeThrown(error)}\n`);
    return EXIT.internal;
  }
}

function describeThrown(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** The program; each command's action hands the status it ends with to `finish`. */
export function buildProgram(finish: (status: ExitStatus) => void): Command {
  const version = packageVersion();
  const program = new Command();
  program
    .name("hmmsim")
    .description(
      "An executable model of Linux HMM device-memory migration (migrate_vma) on a memory manager that holds real bytes.",
    )
    .version(version, "-V, --version")
    .showHelpAfterError(false)
    // Commander throws instead of exiting, so that main waits for stdout and picks the status.
    .exitOverride()
    .configureOutput({
      writeOut: (text) => writeStdout(text, text === `${version}\n` ? "the version" : "the help"),
      writeErr: writeStderr,
      outputError: (text, write) => write(`${text.split("\n")[0]}\n`),
    })
    .addHelpText("afterAll", EXIT_STATUS_HELP);

  program
    .command("demo")
    .description(
      "fill a buffer, migrate it to device 0, read it on the device, fault half back with the CPU, migrate the rest back; check data and invariants",
    )
    .addOption(
      new Option(
        "--protocol <version>",
        "migrate_vma protocol to run (seed fails its checks: its known defect)",
      )
        .choices([...PROTOCOL_VERSIONS])
        .default("modern"),
    )
    .addOption(
      new Option("--pages <n>", "buffer size in 4 KiB pages").argParser(parsePagesArgument).default(1024),
    )
    .addOption(
      new Option("--store <kind>", "page contents: real bytes or one version token per page")
        .choices(["bytes", "tokens"])
        .default("bytes"),
    )
    .option("--json", "print one JSON document instead of the report")
    .action(
      async (options: { protocol: ProtocolVersion; pages: number; store: StoreKind; json?: boolean }) => {
        if (options.store === "bytes" && options.pages > BYTES_STORE_PAGES_MAX) {
          program.error(
            `error: --pages ${options.pages} is too large for the bytes store (at most ${BYTES_STORE_PAGES_MAX}, 1 GiB); use --store tokens`,
            { exitCode: EXIT.usage },
          );
        }
        finish(
          await execute({
            command: "demo",
            protocol: options.protocol,
            pages: options.pages,
            store: options.store,
            json: options.json === true,
            progress: options.pages >= LONG_RUN_PAGES,
          }),
        );
      },
    );

  program
    .command("conformance")
    .description(
      "run the ports of the kernel's hmm-tests under 4.14 and modern, in the device-private and device-coherent variants, as a self-check",
    )
    .option("--json", "print one JSON document instead of the report")
    .action(async (options: { json?: boolean }) => {
      finish(await execute({ command: "conformance", json: options.json === true }));
    });
  program
    .command("explore")
    .description(
      "explore the schedules of a concurrent scenario for deadlocks, livelocks, use after free, broken invariants and lost data; print a schedule that replays what it finds",
    )
    .option("--list", "list the built-in scenarios: the defect catalogue and the fixed kernel's")
    .option("--defect <id>", "the catalogue scenario of defect ID, with the defect's switch on")
    .option("--fixed", "with --defect: the same scenario on the fixed kernel")
    .option(
      "--scenario <file>",
      "a scenario of your own: a module exporting it (FILE#NAME picks one of several; see the README), or a built-in name",
    )
    .addOption(
      new Option("--strategy <name>", "search strategy").choices(["dfs", "pct", "random"]).default("dfs"),
    )
    .addOption(
      new Option(
        "--preemptions <k>",
        "dfs: most preemptions per schedule (default: the scenario's, 2 for most)",
      ).argParser(integerArgument(0, 64)),
    )
    .addOption(new Option("--depth <d>", "pct: bug depth (default 3)").argParser(integerArgument(1, 64)))
    .addOption(new Option("--executions <n>", "most executions").argParser(integerArgument(1, 1e12)))
    .addOption(new Option("--seconds <s>", "time budget").argParser(secondsArgument).default(10))
    .addOption(
      new Option("--seed <s>", "seed of pct, random and dfs's order of alternatives")
        .argParser(integerArgument(0, 2 ** 32 - 1))
        .default(1),
    )
    .option("--replay <schedule>", "replay a schedule string exactly and print its report")
    .option("--check-each-step", "run the invariant checker after every step, not only at the end")
    .addOption(
      new Option("--workers <n>", "split the search over n worker threads")
        .argParser(integerArgument(1, 64))
        .default(1),
    )
    .option("--json", "print one JSON document instead of the report")
    .addHelpText(
      "after",
      EXIT_STATUS_HELP.replace("its checks held", "its checks held (explore: nothing was found)"),
    )
    .action(
      async (options: {
        list?: boolean;
        defect?: string;
        fixed?: boolean;
        scenario?: string;
        strategy: "dfs" | "pct" | "random";
        preemptions?: number;
        depth?: number;
        executions?: number;
        seconds: number;
        seed: number;
        replay?: string;
        workers: number;
        checkEachStep?: boolean;
        json?: boolean;
      }) => {
        if (options.fixed === true && options.defect === undefined)
          program.error("error: --fixed goes with --defect ID", { exitCode: EXIT.usage });
        finish(
          await execute({
            command: "explore",
            list: options.list === true,
            defect: options.defect ?? null,
            fixed: options.fixed === true,
            scenario: options.scenario ?? null,
            strategy: options.strategy,
            preemptions: options.preemptions ?? null,
            depth: options.depth ?? null,
            executions: options.executions ?? null,
            seconds: options.seconds,
            seed: options.seed,
            replay: options.replay ?? null,
            workers: options.workers,
            checkEachStep: options.checkEachStep === true,
            json: options.json === true,
            progressMs: EXPLORE_PROGRESS_MS,
          }),
        );
      },
    );
  return program;
}

async function main(argv: readonly string[]): Promise<ExitStatus> {
  let status: ExitStatus = EXIT.ok;
  try {
    await buildProgram((finished) => {
      status = finished;
    }).parseAsync([...argv]);
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    // Help and --version end with 0; every usage error commander finds, with the usage status.
    status = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  const failure = await settleStdout();
  if (failure !== null) {
    writeStderr(`${failure}\n`);
    return EXIT.outputFailed;
  }
  return status;
}

installInterruptHandler();
startWorkerEarly();
try {
  // Not process.exit: the process ends once stdout has taken everything.
  process.exitCode = await main(process.argv);
} catch (error) {
  writeStderr(`hmmsim: internal error: ${describeThrown(error)}\n`);
  process.exitCode = EXIT.internal;
}
