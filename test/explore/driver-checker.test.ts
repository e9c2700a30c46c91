/** A driver's own invariant checker, registered with the system, runs inside checkInvariants. */
import { describe, expect, it } from "vitest";
import { System } from "../../src/system.js";
import { errorCode } from "../protocol/helpers.js";

describe("System.registerInvariantChecker", () => {
  it("adds the driver's lines, prefixed with its name, after the model's", () => {
    const system = new System({ ram: "1MiB", devices: [] });
    let broken = false;
    system.registerInvariantChecker("mydrv", () => (broken ? ["device page table out of date"] : []));
    expect(system.checkInvariants()).toEqual([]);
    broken = true;
    expect(system.checkInvariants()).toEqual(["mydrv: device page table out of date"]);
    expect(system.unregisterInvariantChecker("mydrv")).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
    expect(system.unregisterInvariantChecker("mydrv")).toBe(false);
  });

  it("reports a checker that throws as a violation instead of ending the check", () => {
    const system = new System({ ram: "1MiB", devices: [] });
    system.registerInvariantChecker("flaky", () => {
      throw new Error("boom");
    });
    const lines = system.checkInvariants();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^flaky: .*boom/);
  });

  it("refuses a bad name or checker and a name taken twice", () => {
    const system = new System({ ram: "1MiB", devices: [] });
    expect(errorCode(() => system.registerInvariantChecker("", () => []))).toBe("EINVAL");
    expect(errorCode(() => system.registerInvariantChecker("x", "nope" as never))).toBe("EINVAL");
    system.registerInvariantChecker("x", () => []);
    expect(errorCode(() => system.registerInvariantChecker("x", () => []))).toBe("EEXIST");
  });
});
