/**
 * What happens when a user page fault runs out of memory (mm/oom_kill.c pagefault_out_of_memory,
 * out_of_memory, select_bad_process, oom_badness; arch/x86/mm/fault.c mm_fault_error): a user access
 * whose fault returns VM_FAULT_OOM never gets SIGBUS on x86; the fault handler calls
 * pagefault_out_of_memory() and returns to user space, which retries the access, or dies if it was
 * chosen as the OOM killer's victim.
 *
 * - 4.14 (and the seed's kernels): pagefault_out_of_memory() runs out_of_memory(), which kills the task
 *   with the highest oom_badness() (or the current task, if it is already dying).
 * - Today (since 60e2793d440a, "mm, oom: do not trigger out_of_memory from the #PF", 5.16) it only warns
 *   ("Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF") and the access retries: the OOM
 *   killer runs in the page allocator instead, before an allocation fails.
 *
 * Deliberate difference, and what stands in for the OOM killer: hmmsim's RAM is a fixed pool with no
 * reclaim and its allocator fails at once, so under today's kernel a VM_FAULT_OOM with RAM exhausted is
 * answered as the allocator's OOM killer would have answered the allocation: a victim is chosen and
 * killed here. A VM_FAULT_OOM while RAM has free frames (a driver's migrate_to_ram that failed to get a
 * page, say) is only retried. oom_badness counts the mm's resident pages and its PTE tables; there is no
 * swap, no oom_score_adj and no memory cgroup. The caller kills the victim (SIGKILL: exit without
 * returning to user space).
 */
import type { Kernel } from "./kernel.js";
import type { MmStruct } from "./mm_types.js";

/** What the faulting access does next. */
export type PagefaultOomOutcome = "retry" | "kill";

/**
 * oom_badness: resident pages (RSS, device-private entries included, as the kernel counts them) plus
 * page-table pages, the task's share of memory that killing it frees.
 */
export function oomBadness(k: Kernel, mm: MmStruct): number {
  let tables = 0;
  k.pt.forEachTable(mm.root, () => {
    tables++;
  });
  return mm.rssAnon + mm.rssFile + tables;
}

/**
 * select_bad_process over `candidates` (live mms, in creation order, like the task list): the highest
 * badness wins and a tie goes to the later one (oom_evaluate_task replaces the chosen task unless the
 * new one scores lower). Returns the index of the victim, or -1 when there is none.
 */
export function selectBadProcess(k: Kernel, candidates: readonly MmStruct[]): number {
  let chosen = -1;
  let chosenPoints = -1;
  for (let i = 0; i < candidates.length; i++) {
    const mm = candidates[i]!;
    if (mm.exited) continue;
    const points = oomBadness(k, mm);
    if (points < chosenPoints) continue;
    chosen = i;
    chosenPoints = points;
  }
  return chosen;
}

/**
 * pagefault_out_of_memory's decision for the era: today's kernel retries unless RAM is exhausted (see
 * the file comment); 4.14 always runs the OOM killer.
 */
export function pagefaultOutOfMemory(k: Kernel): PagefaultOomOutcome {
  if (k.protocol === "modern" && k.ram.freePages > 0) {
    k.stats.oomRetries++;
    return "retry";
  }
  return "kill";
}
