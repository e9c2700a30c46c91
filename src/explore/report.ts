/**
 * The explorer's reports: the text a person reads (a summary, the schedule string, and the failing
 * execution as a table with one column per thread, Lincheck's layout, each row a step labelled with
 * the kernel function it runs and the state it changed) and the JSON document a program reads.
 */

import type { TraceStep } from "./execution.js";
import type { ExploreResult, Finding } from "./explore.js";

/** Widest a table cell gets before it is cut with an ellipsis. */
const CELL_WIDTH_MAX = 60;
/** The label of a thread's first step, which says nothing worth a row of its own. */
const THREAD_STARTS = "(thread starts)";

/** The --json document of `hmmsim explore`. */
export interface ExploreJson {
  scenario: string;
  protocol: string;
  strategy: string;
  found: boolean;
  violation: { kind: string; message: string } | null;
  schedule: string | null;
  choicePoints: number;
  preemptions: number;
  executions: number;
  complete: boolean;
  seconds: number;
  switches: Record<string, boolean | string>;
  abandoned: number;
  bound: number;
  trace: { step: number; thread: string; label: string; object: string; state: string }[] | null;
}

/** The result of explore() as a plain JSON-serialisable object (what `hmmsim explore --json` prints). */
export function exploreJson(result: ExploreResult): ExploreJson {
  const finding = result.finding;
  return {
    scenario: result.scenario,
    protocol: result.protocol,
    strategy: result.strategy,
    found: finding !== null,
    violation: finding === null ? null : { kind: finding.violation.kind, message: finding.violation.message },
    schedule: finding?.schedule ?? null,
    choicePoints: finding?.choicePoints ?? 0,
    preemptions: finding?.preemptions ?? 0,
    executions: result.executions,
    complete: result.complete,
    seconds: Math.round(result.seconds * 1000) / 1000,
    switches: { ...result.config.switches },
    abandoned: result.abandoned,
    bound: result.bound,
    trace:
      finding === null
        ? null
        : finding.trace.map((step, index) => ({
            step: index + 1,
            thread: finding.threadNames[step.thread] ?? `thread ${step.thread}`,
            label: step.label,
            object: step.object,
            state: step.state,
          })),
  };
}

/** The summary and, for a finding, its schedule and table. */
export function formatExplore(result: ExploreResult): string {
  const switches = Object.entries(result.config.switches).map(([name, value]) => `${name}=${value}`);
  const kernel = `${result.protocol}${switches.length === 0 ? "" : ` with ${switches.join(", ")}`}`;
  const rate = result.seconds > 0 ? Math.round(result.executions / result.seconds) : result.executions;
  const searched =
    `${result.executions} executions (${result.abandoned} more cut short by the reduction) in ` +
    `${result.seconds.toFixed(2)} s, ${rate}/s, strategy ${result.strategy}` +
    (result.strategy === "dfs" ? `, preemption bound ${result.bound}` : "");
  const finding = result.finding;
  if (result.strategy === "replay") {
    const head = [`scenario ${result.scenario} on ${kernel}`, "replayed one schedule"];
    if (finding === null) return [...head, "nothing found: the schedule runs without a violation"].join("\n");
    return [...head, ...findingLines(finding)].join("\n");
  }
  const lines = [`scenario ${result.scenario} on ${kernel}`, searched];
  if (finding === null) {
    lines.push(
      result.complete
        ? "nothing found: the bounded space was explored completely"
        : "nothing found (the space was not exhausted: the budget ran out first)",
    );
    return lines.join("\n");
  }
  lines.push(...findingLines(finding));
  return lines.join("\n");
}

function findingLines(finding: Finding): string[] {
  return [
    "",
    `FOUND ${finding.violation.kind}: ${finding.violation.message}`,
    "",
    `schedule (${finding.choicePoints} choice points, ${finding.preemptions} preemptions, ${finding.steps} steps):`,
    `  ${finding.schedule}`,
    `replay: hmmsim explore --replay '${finding.schedule}'`,
    "",
    formatTable(finding),
  ];
}

/** One column per thread; a row per step; the watched state where a step changed it. */
export function formatTable(finding: Finding): string {
  const used = [...new Set(finding.trace.map((step) => step.thread))].sort((a, b) => a - b);
  const column = new Map(used.map((thread, i) => [thread, i]));
  const headings = used.map((thread) => `T${thread} ${finding.threadNames[thread] ?? ""}`.trim());
  const rows: string[][] = [];
  const states: string[] = [];
  let previous: TraceStep | null = null;
  for (const step of finding.trace) {
    const text =
      step.object === "nothing shared" || step.label.includes(step.object)
        ? step.label
        : `${step.label} [${step.object}]`;
    const last = rows[rows.length - 1];
    // A thread's first step says nothing worth a row: it joins the thread's next one.
    if (
      last !== undefined &&
      previous !== null &&
      previous.thread === step.thread &&
      previous.label === THREAD_STARTS
    ) {
      const cell = column.get(step.thread)!;
      last[cell] = text;
      if (step.state !== "") states[states.length - 1] = step.state;
    } else {
      const row = used.map(() => "");
      row[column.get(step.thread)!] = text;
      rows.push(row);
      states.push(step.state);
    }
    previous = step;
  }
  const widths = headings.map((heading, i) =>
    Math.min(CELL_WIDTH_MAX, Math.max(heading.length, ...rows.map((row) => row[i]!.length))),
  );
  const cut = (text: string, width: number): string =>
    text.length <= width ? text.padEnd(width) : `${text.slice(0, width - 1)}…`;
  const numberWidth = String(rows.length).length;
  const out = [
    `${" ".repeat(numberWidth)} | ${headings.map((heading, i) => cut(heading, widths[i]!)).join(" | ")} | state`,
    `${"-".repeat(numberWidth)}-+-${widths.map((width) => "-".repeat(width)).join("-+-")}-+------`,
  ];
  rows.forEach((row, r) => {
    const cells = row.map((cell, i) => cut(cell, widths[i]!)).join(" | ");
    out.push(`${String(r + 1).padStart(numberWidth)} | ${cells} | ${states[r]}`.trimEnd());
  });
  return out.join("\n");
}
