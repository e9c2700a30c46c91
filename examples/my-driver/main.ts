// Runs minigpu (driver.ts): `npx tsx examples/my-driver/main.ts` in a clone, `node main.js` once built.
import { main } from "./driver.js";

main();
