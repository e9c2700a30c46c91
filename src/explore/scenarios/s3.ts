/**
 * S3 (KERNEL-NOTES section 9): two migrations that lock the same pages in different orders deadlock
 * (ABBA) when prepare takes the page locks with a blocking lock_page; HMM-v25 made it trylock_page
 * (`migrate.prepareTrylock`), so a page another migration holds is simply left where it is.
 *
 * Within one migrate_vma call pages are met in address order, and an anonymous page's address in any
 * VMA follows its index, so two migrations of one buffer meet its pages in the same order: the
 * different order comes from collect. Since 8c3328f1f36a collect trylocks each page under its PTE
 * table's lock and leaves the pages it cannot lock to prepare. A 2-page buffer that straddles a PTE
 * table boundary is collected in two steps. A parent and its forked child share its pages, each with
 * its own page tables, and each migrates its view of the buffer: the parent's migration can lock page
 * 0 (its first table) while the child's, finding page 0 locked, locks page 1; each then sleeps in
 * prepare's lock_page on the page the other holds. (Two opens in one process would not do: each
 * collect runs inside an invalidation of the same mm, and a driver that waits for the other's to
 * end, as the corrected dmirror does, serialises the two collects.) (The
 * seed cannot show it: its collect locks nothing and its leaked reference fails every page's pin
 * check, so the deadlock needs 4.14's reference counting with the seed's blocking lock_page.)
 */
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE } from "../../mm/mman.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { smallSystem } from "./common.js";

/** The last page of one PTE table (512 entries each) and the first of the next. */
const FIRST_VPN = 3 * 512 - 1;

export const s3Scenario: Scenario = {
  name: "s3",
  description:
    "4.14: a parent and its forked child each migrate the 2 pages they share, which straddle a PTE " +
    "table boundary; with a blocking lock_page in prepare each can hold the page the other sleeps on",
  config: { protocol: "4.14", switches: { "migrate.prepareTrylock": true } },
  defect: { id: "S3", switches: { "migrate.prepareTrylock": false }, kind: "deadlock" },
  operations: [{ name: "parent: device 0 MIGRATE_TO_DEV" }, { name: "child: device 0 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config);
    const parent = system.spawn();
    const addr = parent.mmap(2 * system.pageSize, {
      addr: FIRST_VPN * system.pageSize,
      flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    });
    parent.fillPages(addr, 2, 1);
    const child = parent.fork();
    const parentFile = system.device(0).open(parent);
    const childFile = system.device(0).open(child);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: parentFile.mirror.cmdMigrateToDevice(FIRST_VPN, 2) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: childFile.mirror.cmdMigrateToDevice(FIRST_VPN, 2) });
    return {
      system,
      threads,
      observeFinal: () => `${peekWords(parent, FIRST_VPN, 2)} ${peekWords(child, FIRST_VPN, 2)}`,
      watch: [
        { process: parent.pid, vpn: FIRST_VPN },
        { process: parent.pid, vpn: FIRST_VPN + 1 },
        { process: child.pid, vpn: FIRST_VPN },
        { process: child.pid, vpn: FIRST_VPN + 1 },
      ],
    };
  },
};
