// Which RabbitMQ names a backbone's records stream uses (its DEPLOYMENT), and the identity of the stores
// they feed, which holdDeploymentMarker compares so that two deployments never share these queues.
import type { Config } from '../../config/config.js';
import { topologyNames, type TopologyNames } from '../../stores/rabbitmq/topology.js';

export interface RecordStreamDeployment {
  names: TopologyNames;
  /** Where the events end up: equal for every process of one deployment, different for another one. */
  stores: string;
}

export function recordStreamDeployment(
  c: Pick<Config, 'DEPLOYMENT' | 'MONGO_URL' | 'MONGO_DB' | 'POSTGRES_URL' | 'POSTGRES_SCHEMA'>,
): RecordStreamDeployment {
  // Hosts and database names only: never credentials (they would be visible on the broker, hashed or not).
  const mongo = new URL(c.MONGO_URL.replace(/^mongodb(\+srv)?:/, 'http:'));
  const pg = new URL(c.POSTGRES_URL);
  return {
    names: topologyNames(c.DEPLOYMENT),
    stores: `mongodb ${mongo.host}/${c.MONGO_DB}; postgres ${pg.host}${pg.pathname} schema ${c.POSTGRES_SCHEMA}`,
  };
}
