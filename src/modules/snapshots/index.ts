// Public face of the snapshots module: canonical encoding, Merkle proofs, CAR snapshots, freeze and restore.
export { periodHash } from '../canonical/index.js';
export { encodeRow, rowValues, selectSql, type TableSpec } from '../canonical/index.js';
export { jobRollupsSpec, ledgerRollupsSpec, snapshotSections } from '../canonical/index.js';
export { chunkLeafHash, leafHash, merkleRoot, verifyInclusion } from '../canonical/index.js';
export {
  SnapshotsService,
  type ArchiveCover,
  type CreateResult,
  type SnapshotsDeps,
} from './snapshots.service.js';
export { SnapshotReader } from './snapshot-reader.js';
export type { LedgerTotals } from './snapshot-deep.js';
export type { SnapshotRecord } from './snapshots.repository.js';
export {
  verifySnapshot,
  verifySnapshotFile,
  type VerifyOptions,
  type VerifyReport,
  type VerifyProgress,
} from './snapshot-verify.js';
export { checkProof, PROOF_VERSION, type InclusionProof } from './proofs.js';
export { restoreSnapshot, type RestoreResult } from './restore.js';
export { freezeNetwork, sortedSetOnlineNodes, type OnlineNodesSource, type FreezeResult } from './freeze.js';
export {
  CheckpointSigner,
  checkSignature,
  checkpointHash,
  type Checkpoint,
  type SignedCheckpoint,
} from './checkpoint.js';
export { CheckpointLog, CHECKPOINT_LOG, readCheckpointLog } from './checkpoint-log.js';
export { checkConsistency, type ChainReport } from './chain-verify.js';
export { createSnapshotsModule, witnessDirs, type SnapshotsModule } from './snapshots.module.js';
