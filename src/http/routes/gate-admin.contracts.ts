// Zod contracts shared by the Gate and Admin APIs (bodies, params, queries) and the renderers of their replies.
// Amounts are integer micro-credits: decimal strings (or safe integers) in, decimal strings out.
import { z } from 'zod';
import { addressSchema as address, uuidSchema as uuid } from '../../config/vocabulary.js';
import type { Account, ApiKeyRecord, Namespace } from '../../modules/accounts/index.js';
import type { BalanceView } from '../../modules/credits/index.js';
import { JOB_STATUSES } from '../../modules/records/index.js';

export const adminSecurity = [{ adminToken: [] }];

export const idParams = z.object({ id: uuid });
export const keyParams = z.object({ id: uuid, keyId: uuid });
export const jobParams = z.object({ id: uuid, jobId: uuid });

export const createAccountBody = z
  .object({
    email: z.email().max(320).optional(),
    walletAddress: address.optional(),
  })
  .strict()
  .refine((a) => a.email !== undefined || a.walletAddress !== undefined, {
    message: 'give an email or a walletAddress',
  });

export const createNamespaceBody = z
  .object({ name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, '1-63 of a-z 0-9 _ -') })
  .strict();

export const createKeyBody = z
  .object({
    name: z.string().min(1).max(100),
    rateLimitPerS: z.number().int().min(1).max(1_000_000).optional(),
    burst: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();

/** Positive integer micro-credits: a decimal string (any size the ledger accepts) or a safe integer. */
export const microAmount = z.union([
  z.string().regex(/^[1-9][0-9]{0,18}$/, 'a positive integer of micro-credits as a decimal string'),
  z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
]);

export const topUpBody = z
  .object({
    amountMicro: microAmount,
    idempotencyKey: z.string().regex(/^[A-Za-z0-9:_.-]{1,128}$/, '1-128 of A-Z a-z 0-9 : _ . -'),
  })
  .strict();

export const jobsQuery = z
  .object({
    model: z.string().min(1).max(200).optional(),
    status: z.enum(JOB_STATUSES).optional(),
    apiKeyId: uuid.optional(),
    from: z.iso.datetime({ offset: true }).optional(),
    to: z.iso.datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    cursor: z.string().max(500).optional(),
  })
  .strict();
export type JobsQuery = z.infer<typeof jobsQuery>;

export const exportQuery = jobsQuery
  .omit({ limit: true, cursor: true })
  .extend({ format: z.enum(['jsonl', 'csv']).default('jsonl') })
  .strict();
export type ExportQuery = z.infer<typeof exportQuery>;

export function renderAccount(a: Account) {
  return { id: a.id, email: a.email, walletAddress: a.walletAddress, createdAt: a.createdAt.toISOString() };
}

export function renderBalance(b: BalanceView | undefined) {
  return {
    availableMicro: (b?.available ?? 0n).toString(),
    reservedMicro: (b?.reserved ?? 0n).toString(),
    bonusAvailableMicro: (b?.bonusAvailable ?? 0n).toString(),
  };
}

export function renderNamespace(n: Namespace, balance?: BalanceView) {
  return {
    id: n.id,
    accountId: n.accountId,
    name: n.name,
    retentionDays: n.retentionDays,
    retentionPlan: n.retentionPlan,
    createdAt: n.createdAt.toISOString(),
    ...(balance ? { balance: renderBalance(balance) } : {}),
  };
}

/** The key's public fields; the secret is added once, by the creating call. */
export function renderKey(k: ApiKeyRecord) {
  return {
    id: k.id,
    namespaceId: k.namespaceId,
    name: k.name,
    prefix: k.prefix,
    status: k.status,
    rateLimitPerS: k.rateLimitPerS,
    burst: k.burst,
    createdAt: k.createdAt.toISOString(),
  };
}
