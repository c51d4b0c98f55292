// Child of bench/archive-verify.ts: verifies one CAR file pinned by CID with the streaming verifier, prints its time
// and this process's peak RSS (so that generating the file is not counted).
import { verifySnapshotFile } from '../src/modules/snapshots/index.js';

const [path, cid] = process.argv.slice(2);
const t0 = performance.now();
const report = await verifySnapshotFile(path!, { expectedCid: cid });
const secs = (performance.now() - t0) / 1000;
console.log(
  JSON.stringify({
    ok: report.cid === cid,
    secs,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    blocks: report.blocks,
  }),
);
