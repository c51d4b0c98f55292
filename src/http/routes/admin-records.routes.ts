// Job records of a namespace (list with filters and cursor pagination, one job's trace, streamed export), served
// to the Admin API (any namespace) and the Gate API (the token's own namespaces; another's is not found).
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { RecordsQueryService } from '../../modules/records/index.js';
import { exportJobs, listJobs, requireNamespace, type AccountRouteDeps } from './account-actions.js';
import { adminSecurity, exportQuery, idParams, jobParams, jobsQuery } from './gate-admin.contracts.js';

export interface RecordsScope {
  tags: string[];
  /** The account the caller may read (undefined: any namespace, the admin). */
  accountOf(req: FastifyRequest): Promise<string | undefined>;
}

/** What the namespace job records routes use. */
export interface RecordsRouteDeps extends Pick<AccountRouteDeps, 'actions'> {
  records: { query: Pick<RecordsQueryService, 'listJobs' | 'exportJobs' | 'getTrace'> };
}

export function namespaceRecordsRoutes(b: RecordsRouteDeps, scope: RecordsScope): FastifyPluginAsyncZod {
  const { tags } = scope;
  const security = adminSecurity;
  return async (app) => {
    app.get(
      '/namespaces/:id/jobs',
      {
        schema: {
          tags,
          security,
          summary: 'Jobs of a namespace, newest first (filters, cursor pagination)',
          params: idParams,
          querystring: jobsQuery,
        },
      },
      async (req) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        return listJobs(b, ns.id, req.query);
      },
    );

    app.get(
      '/namespaces/:id/jobs/:jobId',
      {
        schema: {
          tags,
          security,
          summary: 'One job: its document, events (routing history, logs) and QC results',
          params: jobParams,
        },
      },
      async (req) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        return b.records.query.getTrace(ns.id, req.params.jobId);
      },
    );

    app.get(
      '/namespaces/:id/export',
      {
        schema: {
          tags,
          security,
          summary: 'Streamed export of the jobs of a namespace (jsonl or csv)',
          params: idParams,
          querystring: exportQuery,
        },
      },
      async (req, reply) => {
        const ns = await requireNamespace(b, req.params.id, await scope.accountOf(req));
        return exportJobs(b, reply, ns.id, req.query);
      },
    );
  };
}

export function adminRecordsRoutes(b: RecordsRouteDeps): FastifyPluginAsyncZod {
  return namespaceRecordsRoutes(b, { tags: ['admin'], accountOf: async () => undefined });
}
