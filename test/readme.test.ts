import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/** The README's library example, run as written (its asserts are its checks). */
describe("README", () => {
  const root = resolve(import.meta.dirname, "..");
  const readme = readFileSync(join(root, "README.md"), "utf8");

  it("opens with the two set-up commands", () => {
    const firstBlock = readme.slice(
      readme.indexOf("```sh"),
      readme.indexOf("```", readme.indexOf("```sh") + 5),
    );
    expect(firstBlock).toContain("npm ci && npm start");
    expect(firstBlock).toContain("npm ci && npm test");
  });

  it("runs the library example without an assertion failing", async () => {
    const start = readme.indexOf("```ts\n");
    expect(start).toBeGreaterThan(0);
    const code = readme
      .slice(start + 6, readme.indexOf("```", start + 6))
      .replaceAll('"./src/', `"${root}/src/`);
    const dir = mkdtempSync(join(root, "test", ".readme-"));
    try {
      const file = join(dir, "example.ts");
      writeFileSync(file, code);
      await expect(import(file)).resolves.toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
