/**
 * The friendly surface: a System is one simulated machine (RAM, CPUs, a page store, a protocol
 * version); it spawns processes and creates tmpfs files.
 */
import { loffArg } from "./base/abi.js";
import { checkReturn, EEXIST, EFAULT, EFBIG, EINVAL, ENOENT, ESRCH, KernelError } from "./base/errno.js";
import { PAGE_SIZE, parsePages } from "./base/units.js";
import { Device } from "./device.js";
import { MemcpyEngine } from "./drivers/copy_engine.js";
import { DmirrorDevice, type DmirrorSwitches, TEST_HMM_SWITCHES } from "./drivers/dmirror.js";
import { checkInvariants } from "./explore/invariants.js";
import { GupTestFile } from "./gup_test.js";
import { sysPread64, sysPwrite64, TMPFS_MAX_BYTES } from "./mm/filemap.js";
import { GupLedger } from "./mm/gup.js";
import { setMaxHugePages } from "./mm/hugetlb.js";
import { Kernel, type ProtocolVersion, type ThpSettings } from "./mm/kernel.js";
import type { FaultContext, FaultPathSwitches } from "./mm/memory.js";
import { MEMORY_DEVICE_COHERENT, MEMORY_DEVICE_PRIVATE, type MemoryType, Pagemaps } from "./mm/memremap.js";
import type { MigrateContext } from "./mm/migrate_device.js";
import { layoutFor, type MigratePfnLayout, type MigrateSwitches, switchesFor } from "./mm/migrate_pfn.js";
import type { AddressSpace, MmStruct } from "./mm/mm_types.js";
import type { StoreKind } from "./mm/page_store.js";
import { Process } from "./process.js";
import type { Chooser, Scheduler } from "./sched/scheduler.js";

/**
 * How a System is built: RAM, page store, protocol version, CPUs, chooser, devices, and the behaviour
 * switches of the driver, migration and fault paths.
 */
export interface SystemOptions {
  /** System RAM, e.g. "256MiB" (default) or a byte count. */
  ram?: string | number;
  store?: StoreKind;
  protocol?: ProtocolVersion;
  cpus?: number;
  /** The scheduler's chooser (default: the lowest-numbered runnable thread). */
  chooser?: Chooser;
  /**
   * Devices (dmirror 0, 1, ...) and the most private memory each may hold, e.g. [{ memory: "1MiB" }].
   * A device starts with one chunk of memory and adds 2 MiB chunks as migrations need pages, as
   * lib/test_hmm.c's dmirror_allocate_chunk does, up to that limit; past it a page cannot be allocated
   * and stays where it is. Memory never used costs nothing. Default: two devices of up to 1 GiB, as
   * test_hmm.c always creates two private devices, and hmm-tests migrates up to 256 MiB to one.
   */
  devices?: DeviceSpec[];
  /**
   * Switches for the dmirror driver where lib/test_hmm.c has a defect (drivers/dmirror_devmem.ts,
   * DmirrorSwitches); all false by default, which is test_hmm.c. `invalidateOnOwnMigration: true` gives
   * a driver whose mirrors stay coherent with the CPU page table while it migrates (test_hmm.c skips
   * its own MMU_NOTIFY_MIGRATE in every open of the device, without moving the notifier sequence, so a
   * racing WRITE is lost, a second open mirrors a freed page, and a racing READ mirrors the page being
   * migrated away); `faultFailsWithoutMm: true` makes READ and WRITE on a file whose mm has exited fail
   * with EINVAL, where test_hmm.c loops forever (hmmsim throws DmirrorLivelockError);
   * `exclusiveRechecks: true` gives HMM_DMIRROR_EXCLUSIVE nouveau's mmu_interval_read_retry check, so an
   * MADV_DONTNEED between make_device_exclusive and the mirror's store cannot leave an atomic entry of a
   * freed page; like nouveau's, it fails with EBUSY (its timeout) over pages already device-exclusive.
   */
  dmirror?: Partial<DmirrorSwitches>;
  /**
   * Single migration switches to override on top of the protocol's (see mm/migrate_pfn.ts), e.g.
   * 4.14 with `zoneDeviceAwarePutback: false` to bring back one historical defect.
   */
  migrateSwitches?: Partial<Omit<MigrateSwitches, "protocol">>;
  /** Single fault-path switches to override (see mm/memory.ts FaultPathSwitches). */
  faultSwitches?: Partial<FaultPathSwitches>;
  /**
   * /sys/kernel/mm/transparent_hugepage: `enabled` "always", "madvise" (the default: only ranges given
   * MADV_HUGEPAGE get THPs, as hmm-tests' THP tests ask) or "never", and `useZeroPage` (default true: a
   * read fault in a THP range maps the huge zero page). Changeable later with setTransparentHugepage.
   */
  thp?: Partial<ThpSettings>;
  /**
   * nr_hugepages at boot (the hugepages= parameter): 2 MiB folios the hugetlb pool takes from RAM for
   * MAP_HUGETLB mappings (default 0: MAP_HUGETLB fails with ENOMEM, as on a kernel with none reserved).
   * Changeable later with setNrHugepages.
   */
  hugepages?: number;
  /**
   * false turns off the migration core's shortcuts for the common case (default true). They change
   * speed, never the resulting state: a test or a doubtful user can compare.
   */
  fastPaths?: boolean;
}

/**
 * One dmirror device: the most memory it may hold, and its kind. `type: "private"` (the default) is
 * MEMORY_DEVICE_PRIVATE, as test_hmm.c's devices 0 and 1; `"coherent"` is MEMORY_DEVICE_COHERENT, as its
 * devices 2 and 3 (created when test_hmm.c is loaded with spm_addr_dev0 and spm_addr_dev1): memory the
 * CPU maps and reads directly, without a fault. Device-coherent memory came with Linux 6.0, so only the
 * "modern" protocol has it (EINVAL otherwise).
 */
export interface DeviceSpec {
  memory: string | number;
  type?: "private" | "coherent";
}

/**
 * The four devices test_hmm.c creates with spm_addr_dev0/1 set, each allowed `memory`: 0 and 1
 * device-private, 2 and 3 device-coherent. hmm-tests' coherent variant opens 2 and 3.
 */
export function testHmmDevices(memory: string | number = DEFAULT_DEVICE_MEMORY): DeviceSpec[] {
  return [
    { memory, type: "private" },
    { memory, type: "private" },
    { memory, type: "coherent" },
    { memory, type: "coherent" },
  ];
}

/**
 * A driver's own invariant checker (System.registerInvariantChecker): every violated invariant of the
 * driver's state against the model's, one line each; empty when consistent. It must not change
 * anything: the explorer runs it at the end of every execution, and the tests at quiescence.
 */
export type InvariantChecker = (system: System) => string[];

/**
 * What System.attachDriver hands a driver's loader: everything a driver of the kernel-level API
 * (`hmmsim/driver`) needs from the machine it is loaded into, as a kernel module gets it from the
 * kernel it is linked against.
 */
export interface DriverContext {
  /** The name the driver was attached under (its invariant checker reports under it). */
  readonly name: string;
  readonly system: System;
  /** The kernel: pages, page store (`kernel.store`), RAM allocator (`kernel.ram`), scheduler. */
  readonly kernel: Kernel;
  /** The pagemaps memremapPages registers device memory in (pfns above RAM, handed out as it grows). */
  readonly pagemaps: Pagemaps;
  /** The scheduler (`kernel.sched`): `call` runs a Kfn to completion, Locks and objects need it. */
  readonly sched: Scheduler;
  /** What migrate_vma_* and migrate_device_* take; it is also the FaultContext hmm_range_fault takes. */
  readonly migrate: MigrateContext;
  /** The running protocol's MIGRATE_PFN_* values (`layout.VALID`, `layout.MIGRATE`, `layout.WRITE`, ...). */
  readonly layout: MigratePfnLayout;
  /** Registers the driver's invariant checker under its name (System.registerInvariantChecker). */
  registerInvariantChecker(check: InvariantChecker): void;
}

/** A driver's loader (its module_init): builds the driver against the context and returns it. */
export type DriverLoader<T> = (ctx: DriverContext) => T;

/** A device's memory limit when SystemOptions.devices does not say. */
const DEFAULT_DEVICE_MEMORY = "1GiB";

/**
 * THP settings checked as a write to the sysfs files is (EINVAL for anything but "always", "madvise" or
 * "never", and for a use_zero_page that is not a boolean), on top of `current`.
 */
function checkedThpSettings(settings: unknown, current: ThpSettings): ThpSettings {
  if (typeof settings !== "object" || settings === null)
    throw new KernelError(EINVAL, "transparent_hugepage: the settings must be an object");
  const { enabled = current.enabled, useZeroPage = current.useZeroPage } = settings as Partial<ThpSettings>;
  if (enabled !== "always" && enabled !== "madvise" && enabled !== "never")
    throw new KernelError(
      EINVAL,
      `transparent_hugepage/enabled: ${String(enabled)} is not always, madvise or never`,
    );
  if (typeof useZeroPage !== "boolean")
    throw new KernelError(
      EINVAL,
      `transparent_hugepage/use_zero_page: ${String(useZeroPage)} is not a boolean`,
    );
  return { enabled, useZeroPage };
}

/** The pagemap type of a DeviceSpec, checked: EINVAL for an unknown kind or one the protocol lacks. */
function deviceMemoryType(type: unknown, minor: number, protocol: ProtocolVersion): MemoryType {
  if (type === undefined || type === "private") return MEMORY_DEVICE_PRIVATE;
  if (type !== "coherent")
    throw new KernelError(EINVAL, `device ${minor}: type ${String(type)} is not "private" or "coherent"`);
  if (protocol !== "modern")
    throw new KernelError(
      EINVAL,
      `device ${minor}: device-coherent memory (MEMORY_DEVICE_COHERENT, Linux 6.0) needs the modern protocol`,
    );
  return MEMORY_DEVICE_COHERENT;
}

/** Fault-path behaviour of each protocol version (see mm/memory.ts FaultPathSwitches). */
export function faultSwitchesFor(protocol: ProtocolVersion): FaultPathSwitches {
  return {
    migrationWaitTakesRef: protocol !== "modern",
    deviceFaultHoldsPage: protocol === "modern",
    deviceFaultTrylock: protocol === "modern",
  };
}

/**
 * A tmpfs file: bytes in the page cache, mappable with MAP_SHARED or MAP_PRIVATE. pread and pwrite
 * check their arguments as the kernel does (see sysPread64 and sysPwrite64 in mm/filemap.ts).
 */
export class TmpFile {
  constructor(
    /** The system whose page cache holds the file: mmap takes only files of its own system. */
    readonly system: System,
    readonly space: AddressSpace,
  ) {}

  /** The file's name. */
  get name(): string {
    return this.space.name;
  }

  /** The file's size in bytes. */
  get size(): number {
    return this.space.sizeBytes;
  }

  /** pwrite(2): returns bytes written (fewer only when memory runs out part-way). */
  write(offset: number, data: Uint8Array): number {
    const k = this.system.kernel;
    return checkReturn(sysPwrite64(k, this.space, offset, data, 0), "pwrite");
  }

  /** pread(2): returns the bytes read (short at end of file, empty at or past it). */
  read(offset: number, length: number): Uint8Array {
    const got = sysPread64(this.system.kernel, this.space, offset, length);
    if (typeof got === "number") throw new KernelError(-got, "pread");
    return got;
  }
}

/**
 * One simulated machine: RAM, CPUs, a page store, a protocol version, dmirror devices; it spawns processes
 * and creates tmpfs files.
 */
export class System {
  readonly kernel: Kernel;
  readonly pagemaps: Pagemaps;
  readonly gup = new GupLedger();
  readonly faultContext: FaultContext;
  readonly migrateContext: MigrateContext;
  readonly protocol: ProtocolVersion;
  readonly devices: Device[] = [];
  private readonly processes = new Map<number, Process>();
  private nextPid = 1;
  private readonly driverCheckers = new Map<string, InvariantChecker>();
  private readonly driverNames = new Set<string>();

  constructor(options: SystemOptions = {}) {
    const ramPages = parsePages(options.ram ?? "256MiB", "ram");
    this.protocol = options.protocol ?? "modern";
    this.kernel = new Kernel({
      ramPages,
      store: options.store ?? "bytes",
      protocol: this.protocol,
      cpus: options.cpus ?? 2,
      scheduler: options.chooser === undefined ? {} : { chooser: options.chooser },
      fastPaths: options.fastPaths ?? true,
      thp: checkedThpSettings(options.thp ?? {}, { enabled: "madvise", useZeroPage: true }),
      // Each device's first chunk (2 MiB, or all its memory when less) lies above RAM, aligned to 2 MiB.
      pfnCapacityHint: Math.ceil(ramPages / 512) * 512 + (options.devices?.length ?? 2) * 512,
    });
    this.kernel.gupLedger = this.gup;
    if (options.hugepages !== undefined) this.setNrHugepages(options.hugepages);
    this.pagemaps = new Pagemaps(this.kernel);
    this.faultContext = {
      k: this.kernel,
      pagemaps: this.pagemaps,
      switches: { ...faultSwitchesFor(this.protocol), ...options.faultSwitches },
      gup: this.gup,
    };
    this.migrateContext = {
      ...this.faultContext,
      migrate: { ...switchesFor(this.protocol), ...options.migrateSwitches },
      layout: layoutFor(this.protocol),
    };
    const copier = new MemcpyEngine(this.kernel.store);
    const dmirrorSwitches: DmirrorSwitches = { ...TEST_HMM_SWITCHES, ...options.dmirror };
    const specs = options.devices ?? [{ memory: DEFAULT_DEVICE_MEMORY }, { memory: DEFAULT_DEVICE_MEMORY }];
    specs.forEach((spec, minor) => {
      const pages = parsePages(spec.memory, `device ${minor} memory`);
      const type = deviceMemoryType(spec.type, minor, this.protocol);
      const driver = new DmirrorDevice(this.migrateContext, minor, pages, copier, dmirrorSwitches, type);
      this.devices.push(new Device(this, driver));
    });
  }

  /** Device `minor` (0-based). */
  device(minor: number): Device {
    const device = this.devices[minor];
    if (device === undefined)
      throw new KernelError(19, `no device ${minor}: the system has ${this.devices.length}`);
    return device;
  }

  /**
   * open("/sys/kernel/debug/gup_test") by `process`: the gup_test module's file (CONFIG_GUP_TEST), for
   * taking and releasing GUP references and pins from user space. ESRCH for a process that has exited;
   * EINVAL for anything that is not a process of this system; ENOENT under "seed" and "4.14", whose
   * kernels had no gup_test.
   */
  openGupTest(process: Process): GupTestFile {
    if (!(process instanceof Process) || process.system !== this)
      throw new KernelError(EINVAL, "open gup_test: not a process of this system");
    if (process.exited) throw new KernelError(ESRCH, `open gup_test: process ${process.pid} has exited`);
    // mm/gup_test.c came with 5.11 (mm/gup_benchmark.c before it had no such file).
    if (this.protocol !== "modern") throw new KernelError(ENOENT, "open gup_test: no such file before 5.11");
    return new GupTestFile(this, process);
  }

  /**
   * Writes /sys/kernel/mm/transparent_hugepage/enabled and use_zero_page: the settings given change, the
   * others stay; EINVAL (and nothing changes) for a bad value. Existing huge pages stay as they are.
   */
  setTransparentHugepage(settings: Partial<ThpSettings>): void {
    const checked = checkedThpSettings(settings, this.kernel.thp);
    this.kernel.thp.enabled = checked.enabled;
    this.kernel.thp.useZeroPage = checked.useZeroPage;
  }

  /**
   * Writes /proc/sys/vm/nr_hugepages: the hugetlb pool grows with free aligned 2 MiB of RAM while there
   * is some, or gives free folios back (one in use stays). Returns the new nr_hugepages, which may fall
   * short of `count`; EINVAL (nothing changes) for a count that is not a non-negative integer.
   */
  setNrHugepages(count: number): number {
    if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0)
      throw new KernelError(EINVAL, `nr_hugepages: ${String(count)} is not a page count`);
    return setMaxHugePages(this.kernel, Math.min(count, this.kernel.ram.ramPages));
  }

  /** /proc/meminfo's HugePages_Total and HugePages_Free (2 MiB pages). */
  get hugepages(): { total: number; free: number } {
    return { total: this.kernel.hugetlb.total, free: this.kernel.hugetlb.freeCount };
  }

  /** The current /sys/kernel/mm/transparent_hugepage settings. */
  get transparentHugepage(): Readonly<ThpSettings> {
    return { ...this.kernel.thp };
  }

  /** A new process with an empty address space. */
  spawn(): Process {
    return this.adoptProcess(this.kernel.newMm());
  }

  /** Wraps an mm made by fork in a Process. */
  adoptProcess(mm: MmStruct): Process {
    const pid = this.nextPid++;
    const process = new Process(this, pid, mm, (pid - 1) % this.kernel.sched.cpus);
    this.processes.set(pid, process);
    return process;
  }

  /** Drops an exited process from the system's process table. */
  forgetProcess(process: Process): void {
    this.processes.delete(process.pid);
  }

  /** The processes that have not exited. */
  liveProcesses(): Process[] {
    return [...this.processes.values()];
  }

  /**
   * A tmpfs file of `size` bytes (zero-filled), like open(O_TMPFILE) plus ftruncate. The name is a
   * label (a string; anything else is a bad pathname pointer, EFAULT); the size is ftruncate's off_t:
   * EINVAL when negative (do_sys_ftruncate), EFBIG above the largest file (inode_newsize_ok).
   */
  createFile(name: string, size = 0): TmpFile {
    if (typeof name !== "string") throw new KernelError(EFAULT, "open: the name must be a string");
    const length = loffArg(size);
    if (length === null || length < 0n) throw new KernelError(EINVAL, `ftruncate: file size ${String(size)}`);
    if (length > BigInt(TMPFS_MAX_BYTES)) throw new KernelError(EFBIG, `ftruncate: file size ${size}`);
    return new TmpFile(this, this.kernel.newAddressSpace(name, Number(length), false));
  }

  /** Every violated invariant, one line each; empty when the whole state is consistent. */
  checkInvariants(): string[] {
    return checkInvariants(this);
  }

  /**
   * Adds a driver's own invariant checker, which checkInvariants (and so the explorer, at the end of
   * each execution) runs after the model's, each line prefixed with `name`: a user-written driver
   * compares its device page table with the CPU's, say. EINVAL for a name that is not a non-empty
   * string or a checker that is not a function; EEXIST for a name already registered.
   */
  registerInvariantChecker(name: string, check: InvariantChecker): void {
    if (typeof name !== "string" || name.length === 0)
      throw new KernelError(EINVAL, "registerInvariantChecker: the name must be a non-empty string");
    if (typeof check !== "function")
      throw new KernelError(EINVAL, `registerInvariantChecker ${name}: the checker must be a function`);
    if (this.driverCheckers.has(name))
      throw new KernelError(EEXIST, `registerInvariantChecker: ${name} is already registered`);
    this.driverCheckers.set(name, check);
  }

  /**
   * Loads a driver of your own into this system, as insmod loads a module: calls `load` with the
   * DriverContext (kernel, pagemaps, migrate context, the protocol's MIGRATE_PFN_* layout, and a
   * checker registration under `name`) and returns what it returns. The driver registers its memory
   * (memremapPages) and mirrors processes as it likes; SystemOptions.devices are dmirror's and are
   * created first. EINVAL for a name that is not a non-empty string or a loader that is not a
   * function; EEXIST for a name already attached. A loader that throws leaves nothing registered
   * under its name (pagemaps it created stay: the kernel cannot unregister them either).
   */
  attachDriver<T>(name: string, load: DriverLoader<T>): T {
    if (typeof name !== "string" || name.length === 0)
      throw new KernelError(EINVAL, "attachDriver: the name must be a non-empty string");
    if (typeof load !== "function")
      throw new KernelError(EINVAL, `attachDriver ${name}: the loader must be a function`);
    if (this.driverNames.has(name))
      throw new KernelError(EEXIST, `attachDriver: ${name} is already attached`);
    const ctx: DriverContext = {
      name,
      system: this,
      kernel: this.kernel,
      pagemaps: this.pagemaps,
      sched: this.kernel.sched,
      migrate: this.migrateContext,
      layout: this.migrateContext.layout,
      registerInvariantChecker: (check) => this.registerInvariantChecker(name, check),
    };
    this.driverNames.add(name);
    try {
      return load(ctx);
    } catch (error) {
      this.driverNames.delete(name);
      this.driverCheckers.delete(name);
      throw error;
    }
  }

  /** The names of the drivers attached with attachDriver, in the order they were attached. */
  attachedDrivers(): string[] {
    return [...this.driverNames];
  }

  /** Removes a checker registered under `name` (a driver that unloads); false when there was none. */
  unregisterInvariantChecker(name: string): boolean {
    return this.driverCheckers.delete(name);
  }

  /**
   * Runs every registered driver checker, reporting each line as `name: line` (checkInvariants calls
   * it last). A checker that throws is reported as a violation of its own rather than ending the check.
   */
  runInvariantCheckers(report: (line: string) => void): void {
    for (const [name, check] of this.driverCheckers) {
      let lines: string[];
      try {
        lines = check(this);
      } catch (error) {
        report(
          `${name}: the checker threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
        );
        continue;
      }
      for (const line of lines) report(`${name}: ${line}`);
    }
  }

  /** RAM in use, in pages. */
  get usedPages(): number {
    return this.kernel.ram.usedPages;
  }

  /** Bytes in a page (PAGE_SIZE). */
  get pageSize(): number {
    return PAGE_SIZE;
  }
}
