/**
 * 1afaeb8293c9 ("mm/migrate: Trylock device page in do_swap_page", 6.15): from 6.1 to 6.14
 * do_swap_page took a reference on the device page under the PTE lock and called migrate_to_ram,
 * whose migrate_vma_setup trylocked the page in collect. When several CPUs fault one device page, one
 * wins the page lock and migrates it; each of the others holds its reference while its own collect
 * fails the trylock, and any reference held when the winner reaches folio_migrate_mapping makes the
 * move fail (the pin check's slack for ZONE_DEVICE pages lets one through, move_mapping's exact count
 * does not). The winner restores the device entry and every CPU retries the access: with enough CPUs
 * the faults keep each other's migrations failing, the livelock Xe's SVM hit. Since 6.15 do_swap_page
 * trylocks first and a CPU that cannot lock the page waits without a reference
 * (`fault.deviceFaultTrylock`).
 */
import { PAGE_SIZE } from "../../base/units.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { cpuLoad, loaded, smallSystem, vpnOf } from "./common.js";

const CPUS = 2;

export const deviceFaultTrylockScenario: Scenario = {
  name: "1afaeb8293c9",
  description:
    "modern: two CPUs load one page that is in device 0's memory; when each fault holds a reference " +
    "before the page lock, the CPU that migrates the page back keeps failing folio_migrate_mapping",
  config: { protocol: "modern", switches: { "fault.deviceFaultTrylock": true } },
  defect: { id: "1afaeb8293c9", switches: { "fault.deviceFaultTrylock": false }, kind: "livelock" },
  // The livelock's cycle preempts the CPUs in each round: it needs three preemptions.
  preemptions: 3,
  operations: Array.from({ length: CPUS }, (_, cpu) => ({ name: `CPU ${cpu} load` })),
  build(config, keep) {
    const system = smallSystem(config, 1, { cpus: CPUS });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(PAGE_SIZE);
    proc.fillPages(addr, 1, 1);
    fd.migrateToDevice(addr, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    for (let cpu = 0; cpu < CPUS; cpu++)
      if (keep[cpu]) threads.push({ op: cpu, cpu, body: cpuLoad(proc, vpn), observe: loaded });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
