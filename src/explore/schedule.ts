/**
 * The schedule string: a failure's whole replay input on one line, as shuttle prints it. It names the
 * scenario, the protocol, the switches, the operations kept and the choices that differ from a
 * non-preemptive scheduler's (only those, so it stays short however long the run):
 *
 *   hs1/S3/modern/migrate.prepareTrylock=0/ops=7/4.1,3.0
 *
 * `ops` is a hexadecimal mask of the operations kept (or `*` for all); each choice is `DELTA.THREAD`
 * in base 36, DELTA counting choice points since the previous deviation (the first from 0). Version
 * `hs1` is the only one so far; a later format gets a new prefix and this one stays readable.
 */
import { PROTOCOL_VERSIONS, type ProtocolVersion } from "../mm/kernel.js";
import { type ExploreConfig, parseSwitchName, type SwitchValue } from "./scenario.js";

export const SCHEDULE_VERSION = "hs1";

export interface Schedule {
  readonly scenario: string;
  readonly config: ExploreConfig;
  readonly keep: readonly boolean[];
  /** [choice index, thread index], ascending by choice index. */
  readonly deviations: readonly (readonly [number, number])[];
}

/** Thrown for a string that is not a schedule: the message says what and where. */
export class ScheduleSyntaxError extends Error {
  override readonly name = "ScheduleSyntaxError";
}

const NAME = /^[A-Za-z0-9_.-]+$/;

export function formatSchedule(schedule: Schedule): string {
  const switches = Object.entries(schedule.config.switches)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value === true ? 1 : value === false ? 0 : value}`);
  const ops = schedule.keep.every((on) => on) ? "*" : maskOf(schedule.keep);
  let previous = 0;
  const choices = schedule.deviations.map(([at, thread]) => {
    const text = `${(at - previous).toString(36)}.${thread.toString(36)}`;
    previous = at;
    return text;
  });
  return [
    SCHEDULE_VERSION,
    schedule.scenario,
    schedule.config.protocol,
    switches.length === 0 ? "-" : switches.join(","),
    `ops=${ops}`,
    choices.length === 0 ? "-" : choices.join(","),
  ].join("/");
}

/** Parses a schedule string; `operations` is the scenario's operation count (for the `*` mask). */
export function parseSchedule(text: string, operations: (scenario: string) => number | null): Schedule {
  const trimmed = text.trim();
  const fields = trimmed.split("/");
  if (fields[0] !== SCHEDULE_VERSION)
    throw new ScheduleSyntaxError(
      `schedule: expected it to start with "${SCHEDULE_VERSION}/", got "${fields[0]}"`,
    );
  if (fields.length !== 6)
    throw new ScheduleSyntaxError(`schedule: expected 6 fields separated by "/", got ${fields.length}`);
  const [, scenario, protocol, switchText, opsText, choiceText] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (!NAME.test(scenario)) throw new ScheduleSyntaxError(`schedule: bad scenario name "${scenario}"`);
  const count = operations(scenario);
  if (count === null) throw new ScheduleSyntaxError(`schedule: no scenario named "${scenario}"`);
  if (!(PROTOCOL_VERSIONS as readonly string[]).includes(protocol))
    throw new ScheduleSyntaxError(
      `schedule: unknown protocol "${protocol}" (${PROTOCOL_VERSIONS.join(", ")})`,
    );
  const switches: Record<string, SwitchValue> = {};
  if (switchText !== "-") {
    for (const item of switchText.split(",")) {
      const eq = item.indexOf("=");
      const name = eq < 0 ? item : item.slice(0, eq);
      if (eq < 0 || parseSwitchName(name) === null)
        throw new ScheduleSyntaxError(`schedule: bad switch "${item}" (expected group.field=value)`);
      const value = item.slice(eq + 1);
      switches[name] = value === "1" ? true : value === "0" ? false : value;
    }
  }
  if (!opsText.startsWith("ops="))
    throw new ScheduleSyntaxError(`schedule: expected "ops=", got "${opsText}"`);
  const mask = opsText.slice(4);
  let keep: boolean[];
  if (mask === "*") keep = new Array<boolean>(count).fill(true);
  else {
    if (!/^[0-9a-f]+$/.test(mask)) throw new ScheduleSyntaxError(`schedule: bad operation mask "${mask}"`);
    keep = [];
    for (let op = 0; op < count; op++) keep.push(bitOf(mask, op));
    if (mask.length > Math.ceil(count / 4) + 1 || keep.every((on) => !on))
      throw new ScheduleSyntaxError(`schedule: operation mask "${mask}" does not fit ${count} operations`);
  }
  const deviations: [number, number][] = [];
  if (choiceText !== "-") {
    let at = 0;
    for (const item of choiceText.split(",")) {
      const match = /^([0-9a-z]+)\.([0-9a-z]+)$/.exec(item);
      if (match === null)
        throw new ScheduleSyntaxError(`schedule: bad choice "${item}" (expected DELTA.THREAD)`);
      at += Number.parseInt(match[1]!, 36);
      deviations.push([at, Number.parseInt(match[2]!, 36)]);
    }
  }
  return { scenario, config: { protocol: protocol as ProtocolVersion, switches }, keep, deviations };
}

function maskOf(keep: readonly boolean[]): string {
  let hex = "";
  for (let base = 0; base < keep.length; base += 4) {
    let nibble = 0;
    for (let bit = 0; bit < 4; bit++) if (keep[base + bit] === true) nibble |= 1 << bit;
    hex = nibble.toString(16) + hex;
  }
  return hex;
}

function bitOf(mask: string, op: number): boolean {
  const nibble = mask.length - 1 - Math.floor(op / 4);
  if (nibble < 0) return false;
  return ((Number.parseInt(mask[nibble]!, 16) >> (op % 4)) & 1) === 1;
}
