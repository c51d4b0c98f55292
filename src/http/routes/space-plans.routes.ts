// Space plans of a namespace (the catalogue; show, choose or change, cancel) and its retention receipts and export
// files, served to the Admin API (any namespace) and the Gate API (the token's own namespaces; another's is not
// found). Every change is charged, audited and idempotent by the body's idempotencyKey (a replay answers 200).
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { LedgerService } from '../../modules/credits/index.js';
import {
  renderSpacePlan,
  type PlanChange,
  type RetentionRun,
  type RetentionService,
  type SpacePlansService,
} from '../../modules/records/index.js';
import { requireNamespace, type AccountRouteDeps } from './account-actions.js';
import { adminSecurity as security, idParams, renderBalance } from './gate-admin.contracts.js';
import { uuidSchema as uuid } from '../../config/vocabulary.js';

export interface SpaceScope {
  tags: string[];
  /** The account the caller may act for (undefined: any namespace, the admin). */
  accountOf(req: FastifyRequest): Promise<string | undefined>;
  /** The audit actor of a change. */
  actorOf(req: FastifyRequest): string;
}

/** What the Space plan routes use. */
export interface SpaceRouteDeps extends Pick<AccountRouteDeps, 'actions'> {
  ledger: Pick<LedgerService, 'getBalance'>;
  records: {
    plans: Pick<SpacePlansService, 'catalogue' | 'show' | 'change' | 'receipts'>;
    retention: Pick<RetentionService, 'openExportFile'>;
  };
}

const idempotencyKey = z.string().regex(/^[A-Za-z0-9:_.-]{1,128}$/, '1-128 of A-Z a-z 0-9 : _ . -');
const setPlanBody = z
  .object({
    plan: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'a plan id of GET …/space/plans'),
    idempotencyKey,
  })
  .strict();
const cancelPlanBody = z.object({ idempotencyKey }).strict();
const fileParams = z.object({
  id: uuid,
  runId: uuid,
  file: z
    .string()
    .regex(/^(part-[0-9]{5}\.jsonl\.gz|manifest\.json)$/, 'part-NNNNN.jsonl.gz or manifest.json'),
});

export function renderPlanChange(c: PlanChange) {
  return {
    id: c.id,
    namespaceId: c.namespaceId,
    action: c.action,
    fromPlan: c.fromPlan,
    toPlan: c.toPlan,
    retentionDays: c.retentionDays,
    day: c.day,
    chargedMicro: c.chargedMicro.toString(),
    actor: c.actor,
    createdAt: c.createdAt.toISOString(),
    replayed: c.replayed,
  };
}

export function renderReceipt(r: RetentionRun) {
  return {
    id: r.id,
    collection: r.collection,
    cutoff: r.cutoff.toISOString(),
    status: r.status,
    target: r.target,
    docCount: r.docCount,
    deletedCount: r.deletedCount,
    rangeFrom: r.rangeFrom ? new Date(r.rangeFrom).toISOString() : null,
    rangeTo: r.rangeTo ? new Date(r.rangeTo).toISOString() : null,
    manifestSha256: r.manifestSha256,
    files: r.files.map((f) => ({
      name: f.name.slice(f.name.lastIndexOf('/') + 1),
      sha256: f.sha256,
      count: f.count,
      bytes: f.bytes,
    })),
  };
}

export function namespaceSpaceRoutes(b: SpaceRouteDeps, scope: SpaceScope): FastifyPluginAsyncZod {
  const { tags } = scope;
  return async (app) => {
    const change = async (req: FastifyRequest, namespaceId: string, plan: string, key: string) => {
      const ns = await requireNamespace(b, namespaceId, await scope.accountOf(req));
      const c = await b.records.plans.change({
        namespaceId: ns.id,
        plan,
        idempotencyKey: key,
        actor: scope.actorOf(req),
      });
      return { change: renderPlanChange(c), balance: renderBalance(await b.ledger.getBalance(ns.id)) };
    };

    app.get(
      '/space/plans',
      {
        schema: { tags, security, summary: 'The Space plans on offer: retention and price (micro-credits)' },
      },
      async () => ({ data: b.records.plans.catalogue().map(renderSpacePlan) }),
    );

    app.get(
      '/namespaces/:id/plan',
      {
        schema: {
          tags,
          security,
          summary: "A namespace's Space plan and its last changes",
          params: idParams,
        },
      },
      async (req) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        const v = await b.records.plans.show(ns.id);
        return {
          namespaceId: v.namespaceId,
          plan: v.plan,
          retentionDays: v.retentionDays,
          graceUntil: v.graceUntil?.toISOString() ?? null,
          paidThrough: v.paidThrough?.toISOString() ?? null,
          changes: v.changes.map(renderPlanChange),
        };
      },
    );

    app.post(
      '/namespaces/:id/plan',
      {
        schema: {
          tags,
          security,
          summary:
            'Choose or change the Space plan; pays the first day at once (402 when short; idempotent by key)',
          params: idParams,
          body: setPlanBody,
        },
      },
      async (req, reply) => {
        const r = await change(req, req.params.id, req.body.plan, req.body.idempotencyKey);
        return reply.status(r.change.replayed ? 200 : 201).send(r);
      },
    );

    app.post(
      '/namespaces/:id/plan/cancel',
      {
        schema: {
          tags,
          security,
          summary: 'Cancel the Space plan: back to the default retention (no refund of the day paid)',
          params: idParams,
          body: cancelPlanBody,
        },
      },
      async (req, reply) => {
        const r = await change(req, req.params.id, 'default', req.body.idempotencyKey);
        return reply.status(r.change.replayed ? 200 : 201).send(r);
      },
    );

    app.get(
      '/namespaces/:id/retention/receipts',
      {
        schema: {
          tags,
          security,
          summary: 'Retention runs of a namespace (a receipt once done): cut-off, counts, files with SHA-256',
          params: idParams,
        },
      },
      async (req) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        return { data: (await b.records.plans.receipts(ns.id)).map(renderReceipt) };
      },
    );

    app.get(
      '/namespaces/:id/retention/receipts/:runId/files/:file',
      {
        schema: {
          tags,
          security,
          summary: 'One file of a verified retention export (gzip’d EJSON lines, or its manifest)',
          params: fileParams,
        },
      },
      async (req, reply) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        const f = await b.records.retention.openExportFile(ns.id, req.params.runId, req.params.file);
        const json = req.params.file === 'manifest.json';
        return reply
          .header('content-type', json ? 'application/json; charset=utf-8' : 'application/gzip')
          .header('content-disposition', `attachment; filename="${req.params.file}"`)
          .send(f.stream);
      },
    );
  };
}
