// The hash of one rolled-up day (pure): RFC 6962 root over its canonical job rollup rows, then its ledger rollup rows.
import { LeafHashes, merkleRoot } from './merkle.js';

export function periodHash(jobRows: Uint8Array[], ledgerRows: Uint8Array[]): Buffer {
  const leaves = new LeafHashes();
  for (const r of jobRows) leaves.addLeaf(r);
  for (const r of ledgerRows) leaves.addLeaf(r);
  return merkleRoot(leaves);
}
