// Catalog, Subcloud list and status caches over real live state (the catalog also in process memory).
import { expect, it } from 'vitest';
import {
  buildNodes,
  useLiveStores,
  heartbeat,
  liveConfig,
  openSessions,
  randomAddress,
  registerNodes,
} from '../../../test/live-harness.js';

const env = useLiveStores('catalog');

it('model catalog and status per environment, cached for the TTL; Subcloud lists cached until invalidated', async () => {
  const nodes = buildNodes(
    env.pg.pool,
    env.space.redis,
    liveConfig(env.space.prefix, { LIVE_CELLS: 2, LIVE_CACHE_TTL_MS: 60_000 }),
  );
  const [a, b, c, t] = [randomAddress(), randomAddress(), randomAddress(), randomAddress()];
  await registerNodes(env.pg.pool, [
    { address: a, environment: 'mainnet' },
    { address: b, environment: 'mainnet' },
    { address: c, environment: 'mainnet' },
    { address: t, environment: 'testnet' },
  ]);
  await openSessions(nodes, [
    { address: a, environment: 'mainnet' },
    { address: b, environment: 'mainnet' },
    { address: c, environment: 'mainnet' },
    { address: t, environment: 'testnet' },
  ]);
  const m = (name: string, version: string, active = true) => ({ name, version, active });
  await nodes.presence.ingestMany([
    heartbeat(a, {
      models: [m('llama3-8b', 'v1'), m('mistral-7b', 'v1')],
      gpu: { model: 'A100', memoryMb: 81_920, count: 2 },
    }),
    heartbeat(b, { models: [m('llama3-8b', 'v2'), m('qwen-14b', 'v1', false)] }),
    heartbeat(c, { models: [m('mistral-7b', 'v1')] }),
    heartbeat(t, { environment: 'testnet', models: [m('tiny', 'v0')] }),
  ]);
  await nodes.admin.setFlag({ nodeAddress: c, flag: 'freeze', setBy: 'admin' });

  expect(await nodes.catalog.catalog('mainnet')).toEqual([
    { model: 'llama3-8b', versions: { v1: 1, v2: 1 }, onlineNodes: 2, idleNodes: 2 },
    { model: 'mistral-7b', versions: { v1: 2 }, onlineNodes: 2, idleNodes: 1 },
  ]);
  expect((await nodes.catalog.catalog('testnet')).map((x) => x.model)).toEqual(['tiny']);
  const status = await nodes.catalog.status(async () => ({ 'mainnet.llama3-8b.urgent': 3 }));
  expect(status.environments).toEqual({
    mainnet: { onlineNodes: 3, gpus: 4, models: 2 },
    testnet: { onlineNodes: 1, gpus: 1, models: 1 },
  });
  expect(status.queues).toEqual({ 'mainnet.llama3-8b.urgent': 3 });

  // Within the TTL the cached catalog is served; the live counters have moved on.
  const d = randomAddress();
  await registerNodes(env.pg.pool, [{ address: d, environment: 'mainnet' }]);
  await openSessions(nodes, [{ address: d, environment: 'mainnet' }]);
  await nodes.presence.ingest(heartbeat(d, { models: [m('phi-3', 'v1')] }));
  expect((await nodes.catalog.catalog('mainnet')).map((x) => x.model)).toEqual(['llama3-8b', 'mistral-7b']);
  await nodes.catalog.invalidateCatalog('mainnet');
  expect((await nodes.catalog.catalog('mainnet')).map((x) => x.model)).toEqual([
    'llama3-8b',
    'mistral-7b',
    'phi-3',
  ]);

  const sc = await nodes.admin.createSubcloud({ name: 'lab', environment: 'mainnet' });
  expect(await nodes.catalog.subclouds('mainnet')).toEqual([
    { id: sc.id, name: 'lab', environment: 'mainnet' },
  ]);
  await nodes.admin.createSubcloud({ name: 'zoo', environment: 'mainnet' });
  expect(await nodes.catalog.subclouds('mainnet')).toHaveLength(1);
  await nodes.catalog.invalidateSubclouds('mainnet');
  expect((await nodes.catalog.subclouds('mainnet')).map((s) => s.name)).toEqual(['lab', 'zoo']);
});
