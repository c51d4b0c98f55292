// The shutdown plan: phases run in their fixed order whatever order their parts were added in, parts of one
// phase in reverse order of registration, every part even when one throws or hangs past the deadline, once.
import { describe, expect, it } from 'vitest';
import { ShutdownPlan } from './lifecycle.js';
import { createLogger } from './logger.js';

const log = createLogger('silent');

describe('ShutdownPlan', () => {
  it('runs the phases in order, parts of a phase last-added first, each once', async () => {
    const ran: string[] = [];
    const plan = new ShutdownPlan(log);
    const part = (name: string) => async () => void ran.push(name);
    plan.add('close-stores', 'stores', part('stores'));
    plan.add('close-http', 'http', part('http'));
    plan.add('close-sockets', 'sockets', part('sockets'));
    plan.add('drain', 'dispatch', part('dispatch'));
    plan.add('refuse-new-work', 'workers', part('workers'));
    plan.add('drain', 'second-drain', part('second-drain'));
    await Promise.all([plan.stop(), plan.stop()]);
    await plan.stop();
    expect(ran).toEqual(['workers', 'second-drain', 'dispatch', 'sockets', 'http', 'stores']);
  });

  it('a part that throws or outlives the deadline does not keep the later phases from running', async () => {
    const ran: string[] = [];
    const plan = new ShutdownPlan(log);
    plan.add('drain', 'throws', async () => {
      throw new Error('boom');
    });
    plan.add('close-sockets', 'hangs', () => new Promise<void>(() => undefined));
    plan.add('close-stores', 'stores', async () => void ran.push('stores'));
    const t0 = Date.now();
    await plan.stop(200);
    expect(ran).toEqual(['stores']);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});
