// The network's shared vocabulary, one definition each: environments, priority classes, UUIDs and job ids, and
// node/wallet addresses (literal lists, zod schemas, predicates, normalisation). It sits in config/, the lowest
// layer, because the config schema itself uses it and every layer above may import config; it imports nothing
// but zod. vocabulary.test.ts fails when a copy of one of these definitions appears elsewhere in src/.
import { z } from 'zod';

/** The networks a node serves and a job runs on; part of every queue name, Redis cell and price key. */
export const ENVIRONMENTS = ['testnet', 'mainnet'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];
export const environmentSchema = z.enum(ENVIRONMENTS);
export function isEnvironment(value: unknown): value is Environment {
  return (ENVIRONMENTS as readonly unknown[]).includes(value);
}

/** The scheduling classes of a job (fair-scheduler weights, queue lanes). */
export const PRIORITY_CLASSES = ['urgent', 'bulk', 'test'] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];
export const priorityClassSchema = z.enum(PRIORITY_CLASSES);
/** The class of a job submitted without one (and of an old record that lacks it). */
export const DEFAULT_PRIORITY_CLASS: PriorityClass = 'urgent';
export function isPriorityClass(value: unknown): value is PriorityClass {
  return (PRIORITY_CLASSES as readonly unknown[]).includes(value);
}

// Any UUID layout, either case (RFC 4122 input is case-insensitive): row ids are PostgreSQL `uuid` columns.
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A job id as minted (randomUUID, the idempotency-key UUID) and as stored in string-keyed stores (Redis keys,
// MongoDB documents): lower-case only, so one job never goes by two spellings.
const JOB_ID_PATTERN = new RegExp(UUID_PATTERN.source);

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}
export const uuidSchema = z.string().regex(UUID_PATTERN, 'a UUID');

export function isJobId(value: unknown): value is string {
  return typeof value === 'string' && JOB_ID_PATTERN.test(value);
}
export const jobIdSchema = z.string().regex(JOB_ID_PATTERN, 'a job id (UUID)');

// A 20-byte address in its canonical spelling: 0x and lower-case hex (EIP-55 checksum casing is dropped).
const ADDRESS_PATTERN = /^0x[0-9a-f]{40}$/;

/** True for a canonical (lower-case) address; input is not normalised here, so a checksummed one is refused. */
export function isAddress(value: unknown): value is string {
  return typeof value === 'string' && ADDRESS_PATTERN.test(value);
}
export const addressSchema = z
  .string()
  .regex(ADDRESS_PATTERN, 'a lower-case 0x-prefixed 20-byte hex address');

/** The canonical spelling of an address we derive (viem returns EIP-55 checksum casing): lower-case. */
export function normalizeAddress(address: string): string {
  return address.toLowerCase();
}
