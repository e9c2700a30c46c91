/**
 * The memory-mapping uapi constants, with the x86-64 values (include/uapi/asm-generic/mman-common.h,
 * mman.h, arch/x86/include/uapi/asm/mman.h, include/uapi/linux/mman.h) and the kernel-internal masks
 * the system calls check them against (include/linux/mman.h).
 */

export const PROT_NONE = 0;
/** PROT_READ: the pages may be read. */
export const PROT_READ = 0x1;
/** PROT_WRITE: the pages may be written. */
export const PROT_WRITE = 0x2;
/** PROT_EXEC: the pages may be executed. */
export const PROT_EXEC = 0x4;
/** Accepted by mprotect (arch_validate_prot) and ignored: hmmsim has no atomics-capable memory kinds. */
export const PROT_SEM = 0x8;
/** PROT_GROWSDOWN: mprotect extends the change down to the start of a VM_GROWSDOWN VMA. */
export const PROT_GROWSDOWN = 0x01000000;
/** PROT_GROWSUP: mprotect extends the change up to the end of a VM_GROWSUP VMA. */
export const PROT_GROWSUP = 0x02000000;

/** MAP_SHARED: writes are shared with other mappings of the object. */
export const MAP_SHARED = 0x01;
/** MAP_PRIVATE: a private copy-on-write mapping. */
export const MAP_PRIVATE = 0x02;
/** MAP_SHARED_VALIDATE: MAP_SHARED that fails on unknown flags instead of ignoring them. */
export const MAP_SHARED_VALIDATE = 0x03;
/** MAP_DROPPABLE: private anonymous memory the kernel may free under memory pressure. */
export const MAP_DROPPABLE = 0x08;
/** MAP_TYPE: the mask of the mapping-type bits (SHARED, PRIVATE, SHARED_VALIDATE, DROPPABLE). */
export const MAP_TYPE = 0x0f;
/** MAP_FIXED: map exactly at the address, replacing what is there. */
export const MAP_FIXED = 0x10;
/** MAP_ANONYMOUS: no file behind the mapping; pages start zeroed. */
export const MAP_ANONYMOUS = 0x20;
/** x86-64: place the mapping in the first 2 GiB. */
export const MAP_32BIT = 0x40;
/** x86-64: place the mapping above 4 GiB (where hmmsim puts every mapping anyway). */
export const MAP_ABOVE4G = 0x80;
/** MAP_GROWSDOWN: a stack mapping that grows down (VM_GROWSDOWN). */
export const MAP_GROWSDOWN = 0x0100;
/** MAP_DENYWRITE: ignored by Linux (historical). */
export const MAP_DENYWRITE = 0x0800;
/** MAP_EXECUTABLE: ignored by Linux (historical). */
export const MAP_EXECUTABLE = 0x1000;
/** MAP_LOCKED: lock the pages in memory (VM_LOCKED). */
export const MAP_LOCKED = 0x2000;
/** MAP_NORESERVE: do not reserve commit space for the mapping. */
export const MAP_NORESERVE = 0x4000;
/** MAP_POPULATE: fault the pages in at mmap time. */
export const MAP_POPULATE = 0x8000;
/** MAP_NONBLOCK: with MAP_POPULATE, do not block on I/O (ignored since 2.6.23). */
export const MAP_NONBLOCK = 0x10000;
/** MAP_STACK: the mapping is a thread stack (a hint). */
export const MAP_STACK = 0x20000;
/** MAP_HUGETLB: back the mapping with huge pages (hugetlbfs). */
export const MAP_HUGETLB = 0x40000;
/** MAP_SYNC: synchronous page faults for DAX files (with MAP_SHARED_VALIDATE only). */
export const MAP_SYNC = 0x80000;
/** MAP_FIXED_NOREPLACE: map exactly at the address, but fail with EEXIST rather than replace a mapping. */
export const MAP_FIXED_NOREPLACE = 0x100000;
/** MAP_UNINITIALIZED: do not zero anonymous pages (honoured only on NOMMU kernels). */
export const MAP_UNINITIALIZED = 0x4000000;
/** MAP_HUGE_SHIFT: where the log2 of the huge page size sits in the flags of MAP_HUGETLB. */
export const MAP_HUGE_SHIFT = 26;
/** MAP_HUGE_2MB: MAP_HUGETLB with 2 MiB pages. */
export const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
/** MAP_HUGE_1GB: MAP_HUGETLB with 1 GiB pages. */
export const MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;

/**
 * LEGACY_MAP_MASK: the flags every mmap implementation accepts; MAP_SHARED_VALIDATE refuses the others
 * with EOPNOTSUPP (tmpfs declares no extra ones: no FOP_MMAP_SYNC).
 */
export const LEGACY_MAP_MASK =
  MAP_SHARED |
  MAP_PRIVATE |
  MAP_FIXED |
  MAP_ANONYMOUS |
  MAP_DENYWRITE |
  MAP_EXECUTABLE |
  MAP_UNINITIALIZED |
  MAP_GROWSDOWN |
  MAP_LOCKED |
  MAP_NORESERVE |
  MAP_POPULATE |
  MAP_NONBLOCK |
  MAP_STACK |
  MAP_HUGETLB |
  MAP_32BIT |
  MAP_HUGE_2MB |
  MAP_HUGE_1GB;

/** MREMAP_MAYMOVE: mremap may move the mapping to a new address. */
export const MREMAP_MAYMOVE = 1;
/** MREMAP_FIXED: move the mapping to the given new address (with MREMAP_MAYMOVE). */
export const MREMAP_FIXED = 2;
/** MREMAP_DONTUNMAP: move the pages but leave the old range mapped, empty. */
export const MREMAP_DONTUNMAP = 4;

/** MADV_NORMAL: no special treatment. */
export const MADV_NORMAL = 0;
/** MADV_RANDOM: expect random page references. */
export const MADV_RANDOM = 1;
/** MADV_SEQUENTIAL: expect sequential page references. */
export const MADV_SEQUENTIAL = 2;
/** MADV_WILLNEED: the pages will be needed soon. */
export const MADV_WILLNEED = 3;
/** MADV_DONTNEED: discard the pages; the next access sees zeroes (anonymous) or the file. */
export const MADV_DONTNEED = 4;
/** MADV_FREE: the pages may be freed lazily, unless written again first. */
export const MADV_FREE = 8;
/** MADV_REMOVE: free the pages and the backing store (tmpfs hole punch). */
export const MADV_REMOVE = 9;
/** MADV_DONTFORK: do not copy the range into a child at fork (VM_DONTCOPY). */
export const MADV_DONTFORK = 10;
/** MADV_DOFORK: undo MADV_DONTFORK. */
export const MADV_DOFORK = 11;
/** MADV_MERGEABLE: KSM may merge identical pages of the range. */
export const MADV_MERGEABLE = 12;
/** MADV_UNMERGEABLE: undo MADV_MERGEABLE. */
export const MADV_UNMERGEABLE = 13;
/** MADV_HUGEPAGE: back the range with transparent huge pages where possible. */
export const MADV_HUGEPAGE = 14;
/** MADV_NOHUGEPAGE: do not use transparent huge pages for the range. */
export const MADV_NOHUGEPAGE = 15;
/** MADV_DONTDUMP: leave the range out of core dumps. */
export const MADV_DONTDUMP = 16;
/** MADV_DODUMP: undo MADV_DONTDUMP. */
export const MADV_DODUMP = 17;
/** MADV_WIPEONFORK: the child gets zero-filled memory for the range at fork. */
export const MADV_WIPEONFORK = 18;
/** MADV_KEEPONFORK: undo MADV_WIPEONFORK. */
export const MADV_KEEPONFORK = 19;
/** MADV_COLD: deactivate the pages (move them to the inactive LRU). */
export const MADV_COLD = 20;
/** MADV_PAGEOUT: reclaim the pages now. */
export const MADV_PAGEOUT = 21;
/** MADV_POPULATE_READ: fault the pages in readable (prefault page tables). */
export const MADV_POPULATE_READ = 22;
/** MADV_POPULATE_WRITE: fault the pages in writable (prefault page tables, break COW). */
export const MADV_POPULATE_WRITE = 23;
/** MADV_DONTNEED_LOCKED: MADV_DONTNEED that also applies to VM_LOCKED ranges. */
export const MADV_DONTNEED_LOCKED = 24;
/** MADV_COLLAPSE: collapse the range into transparent huge pages synchronously. */
export const MADV_COLLAPSE = 25;
/** MADV_HWPOISON: poison the pages as if a memory error hit them (testing, CAP_SYS_ADMIN). */
export const MADV_HWPOISON = 100;
/** MADV_SOFT_OFFLINE: migrate the pages away and take their frames offline (testing, CAP_SYS_ADMIN). */
export const MADV_SOFT_OFFLINE = 101;
/** MADV_GUARD_INSTALL: install guard regions: any access to the range faults with SIGSEGV. */
export const MADV_GUARD_INSTALL = 102;
/** MADV_GUARD_REMOVE: remove guard regions installed with MADV_GUARD_INSTALL. */
export const MADV_GUARD_REMOVE = 103;
