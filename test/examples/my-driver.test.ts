/**
 * examples/my-driver (minigpu, the README's "Your own driver"): its main asserts what a user sees at
 * each step and must run clean; and the same steps checked here one by one, with what is left behind,
 * plus the attachDriver arguments a user can get wrong. The example imports `hmmsim/driver`, which
 * vitest.config.ts resolves to the sources; test/package/consumer.test.ts runs it against the package.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { MiniGpu, main } from "../../examples/my-driver/driver.js";
import { EEXIST, EINVAL } from "../../src/base/errno.js";
import {
  addrOf,
  allocLockedPage,
  isDevicePrivateEntry,
  type Kfn,
  PAGE_SIZE,
  ptePresent,
  System,
  TASK_SIZE,
  unlockPage,
  vpnOf,
} from "../../src/driver.js";

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

function setup() {
  const system = new System({ ram: "16MiB", devices: [] });
  const proc = system.spawn();
  const gpu = system.attachDriver("minigpu", (ctx) => new MiniGpu(ctx, proc, 4));
  const run = <T>(name: string, body: Kfn<T>): T => system.kernel.sched.call(name, body);
  const addr = proc.mmap(8 * PAGE_SIZE);
  for (let i = 0; i < 8; i++) proc.write(addr + i * PAGE_SIZE, new TextEncoder().encode(`page ${i}`));
  const pte = (i: number) => system.kernel.pt.read(proc.mm.root, vpnOf(addr) + i);
  return { system, proc, gpu, run, addr, pte };
}

describe("examples/my-driver: minigpu", () => {
  it("main is the README's, verbatim", () => {
    const root = resolve(import.meta.dirname, "..", "..");
    const source = readFileSync(join(root, "examples", "my-driver", "driver.ts"), "utf8");
    const main = source.slice(source.indexOf("export function main"));
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("**Your own driver**"));
    const block = section.slice(
      section.indexOf("```ts\n") + 6,
      section.indexOf("```\n", section.indexOf("```ts\n") + 6),
    );
    expect(block).toBe(main);
  });

  it("main runs its life cycle with every assert holding, and says what it did", () => {
    const lines: string[] = [];
    main((line) => lines.push(line));
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe("the device reads alpha bravo charlie delta");
  });

  it("migrates, mirrors, faults back and evicts; the bytes survive and the invariants hold", () => {
    const { system, proc, gpu, run, addr, pte } = setup();
    expect(system.attachedDrivers()).toEqual(["minigpu"]);
    // Eight pages asked for, four of device memory: the rest stay in RAM.
    expect(run("migrate", gpu.migrateToDevice(addr, 8 * PAGE_SIZE))).toBe(4);
    expect([0, 1, 2, 3, 4].map((i) => isDevicePrivateEntry(pte(i)))).toEqual([true, true, true, true, false]);
    expect(system.checkInvariants()).toEqual([]);
    expect(text(run("device read", gpu.deviceRead(addr + 2 * PAGE_SIZE, 6)))).toBe("page 2");
    // A RAM page the device mirrors too (hmm_range_fault reports it).
    expect(text(run("device read", gpu.deviceRead(addr + 5 * PAGE_SIZE, 6)))).toBe("page 5");
    expect(system.checkInvariants()).toEqual([]);
    // The CPU writes page 2: migrate_to_ram brings it back and the device's entry goes.
    proc.write(addr + 2 * PAGE_SIZE + 5, new TextEncoder().encode("X"));
    expect(ptePresent(pte(2))).toBe(true);
    expect(gpu.pt.has(vpnOf(addr) + 2)).toBe(false);
    expect(text(run("device read", gpu.deviceRead(addr + 2 * PAGE_SIZE, 6)))).toBe("page X");
    expect(gpu.pgmap.pagesInUse).toBe(3);
    expect(system.checkInvariants()).toEqual([]);
    expect(run("evict", gpu.evict())).toBe(3);
    expect(gpu.pgmap.pagesInUse).toBe(0);
    expect([0, 1, 2, 3].map((i) => ptePresent(pte(i)))).toEqual([true, true, true, true]);
    const back = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => text(proc.read(addr + i * PAGE_SIZE, 6)));
    expect(back).toEqual(["page 0", "page 1", "page X", "page 3", "page 4", "page 5", "page 6", "page 7"]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("its invariant checker runs inside checkInvariants and names a stale device entry", () => {
    const { system, gpu, run, addr } = setup();
    run("migrate", gpu.migrateToDevice(addr, PAGE_SIZE));
    run("device read", gpu.deviceRead(addr, 1));
    gpu.pt.set(vpnOf(addr), 1); // corrupt the mirror behind the driver's back
    expect(system.checkInvariants()).toEqual([
      expect.stringMatching(/^minigpu: vpn 0x[0-9a-f]+: device maps pfn 1, the CPU \d+$/),
    ]);
  });
});

describe("hmmsim/driver: attachDriver and the range helpers", () => {
  it("attachDriver answers a bad name or loader with EINVAL, a second name with EEXIST", () => {
    const system = new System({ devices: [] });
    const bad = (f: () => unknown, errno: number) => expect(f).toThrow(expect.objectContaining({ errno }));
    bad(() => system.attachDriver("", () => 1), EINVAL);
    bad(() => system.attachDriver(7 as unknown as string, () => 1), EINVAL);
    bad(() => system.attachDriver("x", null as unknown as () => number), EINVAL);
    expect(system.attachDriver("x", (ctx) => ctx.name)).toBe("x");
    bad(() => system.attachDriver("x", () => 2), EEXIST);
    // A loader that throws leaves neither its name nor its checker behind.
    expect(() =>
      system.attachDriver("y", (ctx) => {
        ctx.registerInvariantChecker(() => ["never"]);
        throw new Error("probe failed");
      }),
    ).toThrow("probe failed");
    expect(system.attachedDrivers()).toEqual(["x"]);
    expect(system.checkInvariants()).toEqual([]);
    expect(system.attachDriver("y", () => 3)).toBe(3);
  });

  it("the context is the system's: kernel, pagemaps, the migrate context and the protocol's layout", () => {
    const system = new System({ protocol: "4.14", devices: [] });
    const ctx = system.attachDriver("probe", (c) => c);
    expect(ctx.system).toBe(system);
    expect(ctx.kernel).toBe(system.kernel);
    expect(ctx.pagemaps).toBe(system.pagemaps);
    expect(ctx.migrate).toBe(system.migrateContext);
    expect(ctx.sched).toBe(system.kernel.sched);
    expect(ctx.layout.DEVICE).toBe(16); // 4.14's MIGRATE_PFN_DEVICE
  });

  it("vpnOf and addrOf convert between bytes and pages, EINVAL outside the user address space", () => {
    expect(vpnOf(0x7000_1234)).toBe(0x70001);
    expect(addrOf(0x70001)).toBe(0x7000_1000);
    expect(vpnOf(TASK_SIZE)).toBe(TASK_SIZE / PAGE_SIZE);
    for (const bad of [-1, 0.5, TASK_SIZE + 1, Number.NaN, "4096" as unknown as number])
      expect(() => vpnOf(bad)).toThrow(expect.objectContaining({ errno: EINVAL }));
    for (const bad of [-1, 1.5, TASK_SIZE / PAGE_SIZE + 1])
      expect(() => addrOf(bad)).toThrow(expect.objectContaining({ errno: EINVAL }));
  });

  it("allocLockedPage gives a locked RAM page inside a thread, EINVAL outside one", () => {
    const system = new System({ devices: [] });
    const k = system.kernel;
    expect(() => allocLockedPage(k)).toThrow(expect.objectContaining({ errno: EINVAL }));
    expect(() => allocLockedPage({} as typeof k)).toThrow(expect.objectContaining({ errno: EINVAL }));
    const pfn = k.sched.call(
      "alloc",
      (function* () {
        const got = allocLockedPage(k);
        expect(k.pages.lockHolder[got]).toBe(k.sched.current().id);
        unlockPage(k, got);
        return got;
      })(),
    );
    expect(k.pages.refcount[pfn]).toBe(1);
    expect(k.ram.isRam(pfn)).toBe(true);
  });
});
