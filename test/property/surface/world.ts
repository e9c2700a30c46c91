/**
 * The reference state of the whole public surface: every process's pages (surface/pages.ts), the
 * tmpfs files, the device files and their state, and the pins a process holds. It holds the
 * hmmsim handles (Process, TmpFile, DeviceFile) so that the tests can act through them, and copies
 * itself, so that the concurrent mode can try each serial order of a group of operations on a copy.
 *
 * What it encodes beyond the pages:
 * - fork gives the child a copy of every private page and the same shared objects; device files and
 *   pins stay with the parent (hmmsim's Process owns its DeviceFiles; a pin is of the parent's page);
 * - exit closes the process's device files (exit_files in do_exit), so their commands give EBADF;
 * - a device command moves pages but never changes bytes; WRITE changes them as a CPU store would;
 * - a pin changes no bytes; unpinning it twice is misuse (no C counterpart: unpin_user_page of a page
 *   not pinned is a kernel bug), answered with a KernelError;
 * - what decides whether a migration to a device must succeed is kept coarse and conservative
 *   (RefProcess.migrationMayFail): only a first migration of private anonymous pages of a process that
 *   never forked, never pinned and never migrated must move every page.
 */
import type { DeviceFile } from "../../../src/device.js";
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

export interface RefFd {
  fd: DeviceFile;
  device: number;
  owner: RefProcess;
  closed: boolean;
  /** HMM_DMIRROR_FLAGS was set: an allocation of some later migration on this file may fail. */
  failAllocArmed: boolean;
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
    copy.fds = this.fds.map((rf) => ({ ...rf, owner: processOf.get(rf.owner)! }));
    copy.pins = this.pins.map((pin) => ({ ...pin, owner: processOf.get(pin.owner)! }));
    return copy;
  }
}
