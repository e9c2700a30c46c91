/**
 * Device handles for the friendly surface: a Device (one dmirror device with its memory) and a
 * DeviceFile (the device opened by a process), whose methods are the dmirror commands. A command that
 * fails throws KernelError with the errno the ioctl returns; on success it returns what the kernel
 * copies back (cpages, faults, and the data or snapshot codes).
 */
import { KernelError } from "./base/errno.js";
import { PAGE_SIZE } from "./base/units.js";
import {
  checkCommand,
  Dmirror,
  type DmirrorDevice,
  type DmirrorResult,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
} from "./drivers/dmirror.js";
import type { Process } from "./process.js";
import type { Kfn } from "./sched/thread.js";
import type { System } from "./system.js";

export interface ReadResult extends DmirrorResult {
  /** The bytes read (bytes store), or null in the tokens store. */
  data: Uint8Array | null;
  /** Each page's first 32-bit word (bytes store) or version (tokens store). */
  words: Uint32Array;
}

export class Device {
  constructor(
    readonly system: System,
    readonly driver: DmirrorDevice,
  ) {}

  get minor(): number {
    return this.driver.minor;
  }

  /** Device pages in use. */
  get usedPages(): number {
    return this.driver.usedPages;
  }

  /** open("/dev/hmm_dmirrorN") by `process`: the mirror follows that process's address space. */
  open(process: Process): DeviceFile {
    return new DeviceFile(this.system, process, new Dmirror(this.driver, process.mm));
  }
}

export class DeviceFile {
  constructor(
    private readonly system: System,
    readonly process: Process,
    readonly mirror: Dmirror,
  ) {}

  private run<T>(name: string, body: Kfn<T | number>): T {
    if (this.mirror.closed) throw new KernelError(9, `${name}: device file is closed`);
    const ret = this.system.kernel.sched.call(
      `dmirror ${this.mirror.device.minor} ${name}`,
      body,
      this.process.cpu,
    );
    if (typeof ret === "number") throw new KernelError(-ret, name);
    return ret;
  }

  /** HMM_DMIRROR_READ. */
  read(addr: number, npages: number): ReadResult {
    const vpn = checkCommand(addr, npages, "HMM_DMIRROR_READ");
    const data = this.system.kernel.store.kind === "bytes" ? new Uint8Array(npages * PAGE_SIZE) : null;
    const words = new Uint32Array(npages);
    const result = this.run("HMM_DMIRROR_READ", this.mirror.cmdRead(vpn, npages, data, words));
    return { ...result, data, words };
  }

  /** HMM_DMIRROR_WRITE: `data` must hold npages whole pages. */
  write(addr: number, npages: number, data: Uint8Array): DmirrorResult {
    const vpn = checkCommand(addr, npages, "HMM_DMIRROR_WRITE");
    if (data.length < npages * PAGE_SIZE)
      throw new KernelError(14, "HMM_DMIRROR_WRITE: buffer shorter than npages");
    return this.run("HMM_DMIRROR_WRITE", this.mirror.cmdWrite(vpn, npages, data));
  }

  /** HMM_DMIRROR_MIGRATE_TO_DEV. */
  migrateToDevice(addr: number, npages: number): DmirrorResult {
    const vpn = checkCommand(addr, npages, "HMM_DMIRROR_MIGRATE_TO_DEV");
    return this.run("HMM_DMIRROR_MIGRATE_TO_DEV", this.mirror.cmdMigrateToDevice(vpn, npages));
  }

  /** HMM_DMIRROR_MIGRATE_TO_SYS. */
  migrateToSystem(addr: number, npages: number): DmirrorResult {
    const vpn = checkCommand(addr, npages, "HMM_DMIRROR_MIGRATE_TO_SYS");
    return this.run("HMM_DMIRROR_MIGRATE_TO_SYS", this.mirror.cmdMigrateToSystem(vpn, npages));
  }

  /** HMM_DMIRROR_SNAPSHOT: one HMM_DMIRROR_PROT_* code per page. */
  snapshot(addr: number, npages: number): Uint8Array {
    const vpn = checkCommand(addr, npages, "HMM_DMIRROR_SNAPSHOT");
    const codes = new Uint8Array(npages);
    this.run("HMM_DMIRROR_SNAPSHOT", this.mirror.cmdSnapshot(vpn, npages, codes));
    return codes;
  }

  /** HMM_DMIRROR_FLAGS: the value is passed in npages, and like every command must be non-zero. */
  setFlags(addr: number, flags: number = HMM_DMIRROR_FLAG_FAIL_ALLOC): void {
    if (this.mirror.closed) throw new KernelError(9, "HMM_DMIRROR_FLAGS: device file is closed");
    checkCommand(addr, flags, "HMM_DMIRROR_FLAGS");
    this.mirror.flags = flags;
  }

  close(): void {
    this.system.kernel.sched.call(
      `dmirror ${this.mirror.device.minor} close`,
      this.mirror.close(),
      this.process.cpu,
    );
  }
}
