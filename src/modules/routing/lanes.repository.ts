// The lane registry in PostgreSQL: which lane queues exist, so consumers can find them (see 0040).
import type { Queryable } from '../../stores/postgres/pool.js';
import { laneQueueName, type LaneKey } from '../../stores/rabbitmq/topology.js';

export interface LaneRow extends LaneKey {
  queueName: string;
  lastPublishedAt: Date;
}

/** Which lanes a consumer serves: an environment, a model and a Subcloud ('_' = no Subcloud, '*' = any). */
export interface LaneFilter {
  environment: string;
  model: string;
  subcloud: string;
}

export class LanesRepository {
  /** The deployment whose lane names are registered (config DEPLOYMENT; '' = the default). */
  constructor(private readonly deployment = '') {}

  async registerLane(db: Queryable, key: LaneKey): Promise<void> {
    await db.query(
      `insert into routing_lanes (queue_name, environment, model, priority, subcloud, namespace_id)
       values ($1, $2, $3, $4, $5, $6)
       on conflict (queue_name) do update set last_published_at = now()`,
      [
        laneQueueName(key, this.deployment),
        key.environment,
        key.model,
        key.priority,
        key.subcloud,
        key.namespaceId,
      ],
    );
  }

  async findLanes(db: Queryable, filters?: readonly LaneFilter[]): Promise<LaneRow[]> {
    const params: unknown[] = [];
    let where = '';
    if (filters) {
      if (filters.length === 0) return [];
      params.push(
        filters.map((f) => f.environment),
        filters.map((f) => f.model),
        filters.map((f) => f.subcloud),
      );
      // '*' as a filter's model or Subcloud matches any (a dispatcher serving every model).
      where = `where exists (select 1 from unnest($1::text[], $2::text[], $3::text[]) as f(e, m, s)
        where f.e = environment and (f.m = '*' or f.m = model) and (f.s = '*' or f.s = subcloud))`;
    }
    const r = await db.query<{
      queue_name: string;
      environment: string;
      model: string;
      priority: string;
      subcloud: string;
      namespace_id: string;
      last_published_at: Date;
    }>(
      `select queue_name, environment, model, priority, subcloud, namespace_id, last_published_at
       from routing_lanes ${where} order by created_at, queue_name`,
      params,
    );
    return r.rows.map((x) => ({
      queueName: x.queue_name,
      environment: x.environment,
      model: x.model,
      priority: x.priority,
      subcloud: x.subcloud,
      namespaceId: x.namespace_id,
      lastPublishedAt: x.last_published_at,
    }));
  }

  /** Forgets a lane the broker no longer has, unless it was published to since `seenBefore`. */
  async deleteLane(db: Queryable, queueName: string, seenBefore: Date): Promise<boolean> {
    const r = await db.query('delete from routing_lanes where queue_name = $1 and last_published_at < $2', [
      queueName,
      seenBefore,
    ]);
    return (r.rowCount ?? 0) > 0;
  }
}
