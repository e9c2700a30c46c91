/** One line of the benchmark report. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** What the value is compared with (the memcpy baseline, or a target). */
  baseline?: number;
  /** value / baseline. */
  ratio?: number;
}

/** Progress goes to stderr so that stdout holds only the JSON report. */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Rounds to 4 significant digits for the report. */
export function round(value: number): number {
  return Number(value.toPrecision(4));
}

export function compared(name: string, value: number, unit: string, baseline: number): BenchResult {
  return { name, value: round(value), unit, baseline: round(baseline), ratio: round(value / baseline) };
}
