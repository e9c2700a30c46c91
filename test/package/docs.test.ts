/**
 * The API reference stays whole: TypeDoc, run on typedoc.json as `npm run docs` runs it but without
 * writing HTML (emit "none"), converts the package's entry points and validates them. Every export of
 * the kinds typedoc.json's requiredToBeDocumented names must carry a doc comment (notDocumented), and
 * every {@link} must resolve (invalidLink); any warning or error fails the test and is listed in the
 * failure message. The README's relative links (the guide that is the docs' front page) must name
 * files or folders of the repository.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Application, Logger, LogLevel } from "typedoc";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..", "..");
const TIMEOUT_MS = 120_000;

/** A TypeDoc logger that keeps every warning and error, so the test can print them. */
class CollectingLogger extends Logger {
  readonly problems: string[] = [];

  override log(message: string, level: LogLevel): void {
    super.log(message, level);
    if (level >= LogLevel.Warn && level !== LogLevel.None) {
      this.problems.push(`${LogLevel[level]}: ${message}`);
    }
  }
}

/**
 * The markdown link targets of `markdown` that point into the repository: not http(s), mailto or an
 * in-page anchor. A `#fragment` after a path is dropped.
 */
function relativeLinkTargets(markdown: string): string[] {
  const targets: string[] = [];
  for (const match of markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = match[1]!;
    if (/^(https?:|mailto:|#)/.test(target)) continue;
    targets.push(target.split("#")[0]!);
  }
  return targets;
}

describe("API reference", () => {
  it(
    "documents every export of the entry points, with no broken links",
    async () => {
      const app = await Application.bootstrapWithPlugins({
        options: join(root, "typedoc.json"),
        emit: "none",
      });
      const logger = new CollectingLogger();
      app.logger = logger;
      const project = await app.convert();
      expect(project, `TypeDoc could not convert the project:\n${logger.problems.join("\n")}`).toBeDefined();
      if (project !== undefined) app.validate(project);
      const problems = logger.problems.join("\n");
      expect(logger.hasErrors(), problems).toBe(false);
      expect(logger.hasWarnings(), problems).toBe(false);
      expect(problems).toBe("");
    },
    TIMEOUT_MS,
  );

  it("README links to files of the repository only where they exist", () => {
    const readme = join(root, "README.md");
    const missing = relativeLinkTargets(readFileSync(readme, "utf8")).filter(
      (target) => !existsSync(resolve(dirname(readme), decodeURIComponent(target))),
    );
    expect(missing, `README.md links to paths that do not exist: ${missing.join(", ")}`).toEqual([]);
  });
});
