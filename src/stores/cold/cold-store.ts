// The cold-storage store both record exports and snapshots use: one interface, implemented by a directory (the
// default) and by an IPFS node (COLD_STORAGE=ipfs). Two kinds of object live in it:
// - files streamed in under a path-like name (record exports), each content-addressed by its file DAG CID;
// - CAR files stored under `<cid>.car` (snapshots), whose root is that CID.
import type { Readable } from 'node:stream';

export interface StoredFile {
  sha256: string;
  bytes: number;
  /** The file DAG CID of the bytes (file-dag.ts): the same whatever store holds them. */
  cid: string;
}

/** A local copy of a stored CAR; `release` removes it when it was fetched for the caller (idempotent). */
export interface LocalCopy {
  path: string;
  release(): Promise<void>;
}

export interface ColdStore {
  /** Shown in receipts and snapshot records, e.g. `dir:/var/archive` or `ipfs:http://127.0.0.1:5001`. */
  readonly description: string;

  /** Writes `name` from the stream; it exists only once complete. Returns its SHA-256, size and CID. */
  write(name: string, data: Readable): Promise<StoredFile>;
  /**
   * The bytes of `name`; a store that addresses by content (IPFS) reads by `cid` and checks every block against it
   * as it streams (the stream fails on a mismatch).
   */
  read(name: string, cid?: string): Readable;
  /** Removes everything under `prefix` (the partial export of a run that crashed before it was verified). */
  removePrefix(prefix: string): Promise<void>;

  /** Stores the local CAR file under `key`; returns where it is and its size. Idempotent for the same key and bytes. */
  put(key: string, localPath: string): Promise<{ location: string; sizeBytes: number }>;
  /** The stored bytes, or undefined when the key is absent. */
  get(key: string): Promise<Uint8Array | undefined>;
  exists(key: string): Promise<boolean>;
  /** Deletes a stored key (a snapshot that failed its read-back verify must not stay behind unrecorded). */
  remove(key: string): Promise<void>;
  /** Where `key` is (or would be) kept, as the snapshot record shows it: a path, or `ipfs://<cid>`. */
  locate(key: string): string;
  /** A local file holding the key (lets verification stream instead of loading it); release it once read. */
  openLocal(key: string): Promise<LocalCopy | undefined>;
  /** A local path to scratch files before `put` (the store's own disk when it has one). */
  scratchDir(): Promise<string>;
  /** Removes scratch files a killed process left behind (older than `olderThanMs`); returns how many. */
  sweepScratch(olderThanMs: number): Promise<number>;
}

export const carKey = (cid: string): string => `${cid}.car`;
