import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The examples import the package by name (`hmmsim`, `hmmsim/driver`, `hmmsim/explore`), as a user's
 * code does; in the repository those names are the sources (tsconfig.json's `paths` says the same to
 * tsc and tsx), and test/package/consumer.test.ts runs the same files against the built package.
 */
const source = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^hmmsim$/, replacement: source("./src/index.ts") },
      { find: /^hmmsim\/driver$/, replacement: source("./src/driver.ts") },
      { find: /^hmmsim\/explore$/, replacement: source("./src/explore_api.ts") },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"],
    testTimeout: 120_000,
    pool: "forks",
  },
});
