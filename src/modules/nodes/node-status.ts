// Node heartbeat contract and the pure rules of live state: cells, GPU classes, scores, flags, eligibility.
import { z } from 'zod';
import { addressSchema as address, environmentSchema, type Environment } from '../../config/vocabulary.js';

export const nodeFlags = ['pause', 'freeze', 'shadow_ban'] as const;
export type NodeFlag = (typeof nodeFlags)[number];

// Names end up inside Redis key names and the scripts' CSV arguments: no `,` `=` `|` or spaces.
export const modelName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'a model name');
export const modelVersion = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'a model version');
export const regionName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'a region name');

/** What a node reports every heartbeat (signature checked by the gateway before this point). */
export const heartbeatSchema = z.object({
  version: z.literal(1),
  address,
  /** The node's own clock (ms) at signing; strictly increasing per node. Later ones win. */
  timestampMs: z.number().int().positive(),
  environment: environmentSchema,
  region: regionName.optional(),
  software: z.record(z.string().max(64), z.string().max(128)).default({}),
  gpu: z.object({
    model: z.string().min(1).max(128),
    memoryMb: z.number().int().min(0),
    count: z.number().int().min(0).max(64).default(1),
  }),
  configDigest: z.string().max(128).default(''),
  models: z
    .array(z.object({ name: modelName, version: modelVersion, active: z.boolean() }))
    .max(64)
    .default([]),
  /** Concurrent jobs the node accepts. */
  capacity: z.number().int().min(1).max(1024),
  /** Work in progress as the node sees it (jobs), for the score. */
  load: z.number().int().min(0).default(0),
  health: z.enum(['ok', 'degraded', 'unhealthy']).default('ok'),
  /**
   * Self-reported quality in [0, 1] and latency: accepted for compatibility, never used for routing (a node
   * could claim to be perfect); the network measures both itself (reputation.ts).
   */
  quality: z.number().min(0).max(1).default(1),
  latencyMs: z.number().min(0).default(0),
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

/** Cell of a node inside its environment: a stable hash of the address (its last 32 bits). */
export function cellOf(nodeAddress: string, cells: number): number {
  if (cells <= 1) return 0;
  return Number.parseInt(nodeAddress.slice(-8), 16) % cells;
}

/** GPU class by memory, for indexes and status counts. */
export function gpuClassOf(memoryMb: number): string {
  const gb = memoryMb / 1024;
  if (gb >= 80) return 'xl80';
  if (gb >= 48) return 'l48';
  if (gb >= 24) return 'm24';
  if (gb >= 16) return 's16';
  return 'xs';
}

/**
 * Heartbeat part of a node's score: only what changes its capacity now (the load it reports, a degraded
 * health). Its self-reported quality and latency do not count: the measured reputation (reputation.ts) is the
 * rest of the score. The scripts add the reputation and subtract penalties and 1,000 × leases / capacity.
 */
export function baseScoreOf(hb: Pick<Heartbeat, 'load' | 'capacity' | 'health'>): number {
  const load = Math.round((Math.min(hb.load, hb.capacity) * 1_000) / hb.capacity);
  const degraded = hb.health === 'degraded' ? 2_000 : 0;
  return 0 - load - degraded;
}

/** Active models as the scripts' CSV: `model=version,...` (installed-only models are not routable). */
export function encodeActiveModels(models: Heartbeat['models']): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const m of models) {
    if (!m.active || seen.has(m.name)) continue;
    seen.add(m.name);
    out.push(`${m.name}=${m.version}`);
  }
  return out.join(',');
}

export interface FlagState {
  flag: NodeFlag;
  /** null: until cleared. */
  expiresAt: Date | null;
}

/** Flags still in force at `now`, as the scripts' CSV `flag=<expiry ms|0>`. */
export function encodeFlags(flags: FlagState[], now: Date): string {
  return flags
    .filter((f) => f.expiresAt === null || f.expiresAt > now)
    .map((f) => `${f.flag}=${f.expiresAt ? f.expiresAt.getTime() : 0}`)
    .join(',');
}

/** What a job asks of a node. */
export interface JobRequirements {
  jobId: string;
  environment: Environment;
  model: string;
  /** Exact version, or any when absent. */
  version?: string;
  minGpuMemoryMb?: number;
  /** Preferred region; other regions are used when it has no eligible node. */
  region?: string;
  subcloudId?: string;
  /** Nodes tried by earlier attempts of this job. */
  excludeNodes?: string[];
}

/** Cells in the order a selection tries them: start at a job-dependent cell so load spreads. */
export function cellOrder(jobId: string, cells: number): number[] {
  let h = 2166136261;
  for (let i = 0; i < jobId.length; i += 1) h = Math.imul(h ^ jobId.charCodeAt(i), 16777619) >>> 0;
  const start = h % cells;
  return Array.from({ length: cells }, (_, i) => (start + i) % cells);
}
