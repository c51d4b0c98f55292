// Builds the routing module (RabbitMQ lanes, retries, quarantine; lane bookkeeping in PostgreSQL; start() it
// before use) and its recurring task (idle lane pruning).
import type { Config } from '../../config/config.js';
import type { Logger } from '../../platform/logger.js';
import type { RecurringTask } from '../../platform/tasks.js';
import type { Stores } from '../../stores/stores.js';
import { RoutingService, routingOptionsFromConfig } from './routing.service.js';

export interface RoutingModule {
  routing: RoutingService;
  tasks: RecurringTask[];
}

export function createRoutingModule(deps: {
  config: Config;
  stores: Pick<Stores, 'pool'>;
  log: Logger;
  /** connection_name of its AMQP connections (e.g. `rty-<instance>`). */
  connectionName: string;
}): RoutingModule {
  const { config } = deps;
  const routing = new RoutingService({
    pool: deps.stores.pool,
    log: deps.log,
    options: routingOptionsFromConfig(config, deps.connectionName),
  });
  return {
    routing,
    tasks: [
      {
        // An idle lane is removed within ROUTING_LANE_IDLE_MS + half of it.
        name: 'routing.prune-lanes',
        intervalMs: Math.max(1000, Math.floor(config.ROUTING_LANE_IDLE_MS / 2)),
        run: (signal) => routing.pruneIdleLanes(new Date(), signal),
      },
    ],
  };
}
