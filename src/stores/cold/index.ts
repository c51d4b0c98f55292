// Cold storage for record exports and snapshots: the store interface, its directory and IPFS implementations, the
// file DAG that content-addresses an export, and the one place that picks the implementation from the config.
import { KuboClient } from '../ipfs/kubo-client.js';
import type { ColdStore } from './cold-store.js';
import { DirectoryStore } from './directory-store.js';
import { IpfsStore } from './ipfs-store.js';

export { carKey, type ColdStore, type LocalCopy, type StoredFile } from './cold-store.js';
export { DirectoryStore } from './directory-store.js';
export { IpfsStore } from './ipfs-store.js';
export { FILE_CHUNK_BYTES, FILE_DAG_TYPE, FileDagBuilder, fileCid, parseFileRoot } from './file-dag.js';

/** COLD_STORAGE=dir keeps everything in `dir`; `ipfs` pins it on the Kubo node at IPFS_API_URL (`dir`: scratch only). */
export function createColdStore(o: { kind: 'dir' | 'ipfs'; dir: string; ipfsApiUrl: string }): ColdStore {
  return o.kind === 'ipfs' ? new IpfsStore(new KuboClient(o.ipfsApiUrl), o.dir) : new DirectoryStore(o.dir);
}
