// `rty serve [--roles …] [--port N]`: runs one backbone process until SIGINT/SIGTERM, then stops gracefully.
import { parseRoles, ROLES } from '../../app/compose.js';
import { startServer } from '../../app/serve.js';
import type { CliContext } from '../context.js';
import { intFlag } from '../flags.js';

export async function runServe(ctx: CliContext, opts: { roles: string; port?: string }): Promise<number> {
  const roles = parseRoles(opts.roles);
  const port = opts.port === undefined ? undefined : intFlag('port', opts.port, 0);
  if (port !== undefined && port > 65535) throw new Error(`--port must be at most 65535, got ${opts.port}`);
  const server = await startServer({
    config: ctx.config,
    log: ctx.log,
    roles,
    ...(port !== undefined ? { port } : {}),
  });
  ctx.out(`rty serve: ${[...roles].join(',')} on ${server.url} (instance ${server.backbone.instanceId})`);
  // The readiness line a supervisor (or a test) waits for.
  ctx.out(`READY ${server.url}`);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      ctx.out(`rty serve: ${sig}, draining`);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await server.stop();
  ctx.out('rty serve: stopped');
  return 0;
}

export const ALL_ROLES = ROLES.join(',');
