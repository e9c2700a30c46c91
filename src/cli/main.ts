/**
 * The hmmsim command: `demo` (what `npm start` runs) and `conformance`. Bad arguments get one line
 * naming the argument and a non-zero exit, never a stack trace.
 */
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { PROTOCOL_VERSIONS, type ProtocolVersion } from "../mm/kernel.js";
import type { StoreKind } from "../mm/page_store.js";
import { formatConformance, runConformance } from "./conformance.js";
import { formatDemo, runDemo } from "./demo.js";

function packageVersion(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

/** The bytes store keeps real frames: the demo needs about 3 bytes of host memory per byte of buffer. */
const BYTES_STORE_PAGES_MAX = 2 ** 18;

/** Runs this long (in pages) report each phase on stderr as it starts. */
const LONG_RUN_PAGES = 65536;

/** On a terminal one line rewritten in place; otherwise a plain line per phase. */
function reportProgress(name: string, index: number, count: number): void {
  const line = `hmmsim demo: phase ${index + 1} of ${count}: ${name}`;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
  else process.stderr.write(`${line}\n`);
}

function parsePagesArgument(value: string): number {
  const pages = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(pages) || pages < 1 || pages > 2 ** 22) {
    throw new InvalidArgumentError("must be a whole number of pages from 1 to 4194304.");
  }
  return pages;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("hmmsim")
    .description(
      "An executable model of Linux HMM device-memory migration (migrate_vma) on a memory manager that holds real bytes.",
    )
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError(false)
    .configureOutput({ outputError: (text, write) => write(`${text.split("\n")[0]}\n`) });

  program
    .command("demo")
    .description(
      "fill a buffer, migrate it to device 0, read it on the device, fault half back with the CPU, migrate the rest back; check data and invariants",
    )
    .addOption(
      new Option("--protocol <version>", "migrate_vma protocol to run")
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
    .action((options: { protocol: ProtocolVersion; pages: number; store: StoreKind; json?: boolean }) => {
      if (options.store === "bytes" && options.pages > BYTES_STORE_PAGES_MAX) {
        program.error(
          `error: --pages ${options.pages} is too large for the bytes store (at most ${BYTES_STORE_PAGES_MAX}, 1 GiB); use --store tokens`,
        );
      }
      const report = runDemo({
        protocol: options.protocol,
        pages: options.pages,
        store: options.store,
        onPhase: options.pages >= LONG_RUN_PAGES ? reportProgress : undefined,
      });
      if (options.pages >= LONG_RUN_PAGES && process.stderr.isTTY) process.stderr.write("\r\x1b[K");
      process.stdout.write(
        options.json === true ? `${JSON.stringify(report, null, 2)}\n` : `${formatDemo(report)}\n`,
      );
    });

  program
    .command("conformance")
    .description("run the ports of the kernel's hmm-tests under 4.14 and modern as a self-check")
    .option("--json", "print one JSON document instead of the report")
    .action(async (options: { json?: boolean }) => {
      const results = await runConformance();
      process.stdout.write(
        options.json === true
          ? `${JSON.stringify({ tests: results }, null, 2)}\n`
          : `${formatConformance(results)}\n`,
      );
      if (results.some((result) => !result.passed)) process.exitCode = 1;
    });
  return program;
}

await buildProgram().parseAsync(process.argv);
