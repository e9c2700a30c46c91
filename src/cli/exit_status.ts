/**
 * hmmsim's exit statuses. They are part of the command's interface (scripts and CI test them), so a
 * code keeps its meaning once published: add new ones, never renumber.
 */
export const EXIT = {
  /** The run finished and its checks held. */
  ok: 0,
  /** The run finished and a check failed (the report says which). */
  checksFailed: 1,
  /** Bad usage: commander's errors (unknown command or option, bad value) and our own refusals. */
  usage: 2,
  /** The report (or help) could not be written to stdout; a reader closing the pipe is not this. */
  outputFailed: 3,
  /** hmmsim itself failed: an exception escaped the model. A bug; the stack trace is on stderr. */
  internal: 4,
  /** Interrupted by SIGINT: 128 + 2, as a shell reports a process that SIGINT ended. */
  interrupted: 130,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/** The "Exit status" section of `--help`, for the program and each command. */
export const EXIT_STATUS_HELP = `
Exit status:
  ${EXIT.ok}    the run finished and its checks held: for demo, the data is intact,
       the device read it intact and the invariant checker found nothing;
       for conformance, every test passed
  ${EXIT.checksFailed}    a check failed (the report says which). demo --protocol seed always
       ends here: its invariant violations are the posted patch's known
       defect (migrate_vma_prepare() never drops collect's page reference,
       so every reference leaks), and they are still violations
  ${EXIT.usage}    bad usage: an unknown command or option, or a bad value
  ${EXIT.outputFailed}    the report could not be written to stdout (for example, no space
       left on device); one line on stderr says what failed. A reader
       that closes the pipe early is not an error: hmmsim stops writing
       and exits with the checks' status
  ${EXIT.internal}    hmmsim itself failed (a bug: the stack trace is on stderr)
  ${EXIT.interrupted}  interrupted (SIGINT); "hmmsim: interrupted" on stderr`;
