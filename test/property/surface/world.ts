/**
 * The reference state of the whole public surface: every process's pages (surface/pages.ts), the
 * tmpfs files, the device files and their state, and the pins a process holds. It holds the
 * hmmsim handles (Process, TmpFile, DeviceFile) so that the tests can act through them, and copies
 * itself, so that the concurrent mode can try each serial order of a group of operations on a copy.
 *
 * What it encodes beyond the pages (src/device.ts, src/process.ts, kernel/fork.c, kernel/exit.c):
 * - an open of a device is one struct file (RefOpenFile) mirroring the mm of the process that opened
 *   it, named by descriptors (RefFd) in one or more processes' tables: fork copies the table (dup_fd),
 *   so the child's descriptors name the parent's open files, at the same fd numbers, and commands
 *   through them work on the parent's mm; the last descriptor's close releases the file;
 * - fork gives the child a copy of every private page and the same shared objects;
 * - exit tears the mm down first (exit_mm), then closes every descriptor (exit_files); an open file a
 *   child still names outlives the mm it mirrors, and its commands then fail as on a dead mm;
 * - a device command moves pages but never changes bytes; WRITE changes them as a CPU store would;
 *   releasing a file (modern: every page of the device evicted) or HMM_DMIRROR_RELEASE changes none;
 * - a pin changes no bytes and outlives its process; unpinning it twice is misuse (no C counterpart:
 *   unpin_user_page of a page not pinned is a kernel bug), answered with EINVAL, nothing unpinned;
 * - HMM_DMIRROR_EXCLUSIVE leaves each page it made device-exclusive mapped by the device for atomic
 *   access (dmirror_atomic_map: an atomic entry in the mirror's xarray), which CHECK_EXCLUSIVE reports
 *   (EPERM) until an invalidation of the page revokes it. A CPU access of the page (do_swap_page ->
 *   remove_device_exclusive_entry, MMU_NOTIFY_EXCLUSIVE, which dmirror_interval_invalidate does not
 *   filter) surely revokes it (RefOpenFile.atomic loses it); any other step may (fork's
 *   copy_nonpresent_pte restores the PTE, mprotect, munmap, madvise, migrations, faults through
 *   hmm_range_fault, another device's exclusive all invalidate): after it the reference no longer
 *   knows, and allows either answer (maybeAtomic) until a CPU access settles it;
 * - what decides whether a migration to a device must succeed is kept coarse and conservative
 *   (RefProcess.migrationMayFail): only a first migration of private anonymous pages of a process that
 *   never forked, never pinned and never migrated must move every page.
 */
import type { DeviceFile, OpenFile } from "../../../src/device.js";
import type { Process } from "../../../src/process.js";
import type { TmpFile } from "../../../src/system.js";
import { cloneObject, clonePages, Identities, type PageMap, type SharedObject } from "./pages.js";

export interface RefProcess {
  process: Process;
  pages: PageMap;
  alive: boolean;
  /**
   * True once a migration to a device may leave pages behind for reasons the reference does not track:
   * the process forked or is a fork's child (COW-shared pages fail migration's reference check), it
   * pinned pages, or it already migrated (pages on a device are not collected again, and another
   * open's mirror does not hold them).
   */
  migrationMayFail: boolean;
}

export interface RefFile {
  file: TmpFile;
  object: SharedObject;
  /** The file size in bytes (pwrite past the end grows it). */
  sizeBytes: number;
}

/** One open of a device (struct file and its struct dmirror). */
export interface RefOpenFile {
  device: number;
  /** The process that opened it: the file mirrors its mm for the file's whole life. */
  mirror: RefProcess;
  /** dmirror_fops_release ran: the last descriptor closed. */
  released: boolean;
  /**
   * HMM_DMIRROR_FLAGS set FAIL_ALLOC and hmmsim's flag still holds it: an allocation of a migration
   * through this open (to the device, to the system, or the CPU fault of a page it migrated) may fail.
   */
  failAllocArmed: boolean;
  /** hmmsim's struct file, to look at its flags. */
  handle: OpenFile;
  /** Pages (vpns of the mirrored mm) surely mapped by the device for atomic access. */
  atomic: Set<number>;
  /** Pages that may still be (a superset of `atomic`). */
  maybeAtomic: Set<number>;
}

/** One descriptor of an open file in one process's table. */
export interface RefFd {
  fd: DeviceFile;
  /** The process whose descriptor table holds it. */
  holder: RefProcess;
  file: RefOpenFile;
  closed: boolean;
}

export interface RefPin {
  owner: RefProcess;
  pfns: number[];
  unpinned: boolean;
}

export class World {
  processes: RefProcess[] = [];
  files: RefFile[] = [];
  fds: RefFd[] = [];
  pins: RefPin[] = [];
  ids = new Identities();

  alive(): RefProcess[] {
    return this.processes.filter((rp) => rp.alive);
  }

  exited(): RefProcess[] {
    return this.processes.filter((rp) => !rp.alive);
  }

  byPid(pid: number): RefProcess {
    const rp = this.processes.find((candidate) => candidate.process.pid === pid);
    if (rp === undefined) throw new Error(`the reference has no process ${pid}`);
    return rp;
  }

  fdOf(fd: DeviceFile): RefFd {
    const rf = this.fds.find((candidate) => candidate.fd === fd);
    if (rf === undefined) throw new Error("the reference has no such device file");
    return rf;
  }

  fileOf(file: TmpFile): RefFile {
    const found = this.files.find((candidate) => candidate.file === file);
    if (found === undefined) throw new Error(`the reference has no file ${file.name}`);
    return found;
  }

  /** The open device files (struct file), each once. */
  openFiles(): RefOpenFile[] {
    return [...new Set(this.fds.map((rf) => rf.file))];
  }

  /**
   * close_fd: the descriptor goes; the last descriptor of its file releases the file. Returns true
   * when this close released it.
   */
  closeFd(rf: RefFd): boolean {
    rf.closed = true;
    if (this.fds.some((other) => other.file === rf.file && !other.closed)) return false;
    rf.file.released = true;
    return true;
  }

  /** A CPU access of [vpn, vpn + count) by `rp` revoked every device's atomic access to those pages. */
  revokeAtomic(rp: RefProcess, vpn: number, count: number): void {
    for (const file of this.openFiles()) {
      if (file.mirror !== rp) continue;
      for (let i = 0; i < count; i++) {
        file.atomic.delete(vpn + i);
        file.maybeAtomic.delete(vpn + i);
      }
    }
  }

  /** After a step that may have revoked atomic access: what was sure is only possible now. */
  blurAtomic(): void {
    for (const file of this.openFiles()) file.atomic.clear();
  }

  /** A deep copy sharing only the hmmsim handles. */
  clone(): World {
    const copy = new World();
    copy.ids = this.ids.clone();
    const objects = new Map<SharedObject, SharedObject>();
    const objectOf = (object: SharedObject) => {
      let cloned = objects.get(object);
      if (cloned === undefined) {
        cloned = cloneObject(object);
        objects.set(object, cloned);
      }
      return cloned;
    };
    for (const file of this.files) copy.files.push({ ...file, object: objectOf(file.object) });
    for (const rp of this.processes)
      for (const page of rp.pages.values()) if (page.object) objectOf(page.object);
    const processOf = new Map<RefProcess, RefProcess>();
    for (const rp of this.processes) {
      const cloned = { ...rp, pages: clonePages(rp.pages, objects) };
      processOf.set(rp, cloned);
      copy.processes.push(cloned);
    }
    const openOf = new Map<RefOpenFile, RefOpenFile>();
    for (const file of this.openFiles())
      openOf.set(file, {
        ...file,
        mirror: processOf.get(file.mirror)!,
        atomic: new Set(file.atomic),
        maybeAtomic: new Set(file.maybeAtomic),
      });
    copy.fds = this.fds.map((rf) => ({
      ...rf,
      holder: processOf.get(rf.holder)!,
      file: openOf.get(rf.file)!,
    }));
    copy.pins = this.pins.map((pin) => ({ ...pin, owner: processOf.get(pin.owner)! }));
    return copy;
  }
}
