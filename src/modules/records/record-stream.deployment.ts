// Which RabbitMQ names a backbone's records stream uses (its DEPLOYMENT), and the identity of the stores
// they feed, which holdDeploymentMarker and the stores stamp compare so that two deployments never share
// these queues.
import { ConnectionString } from 'mongodb-connection-string-url';
import { parse as parsePgUrl } from 'pg-connection-string';
import type { Config } from '../../config/config.js';
import { topologyNames, type TopologyNames } from '../../stores/rabbitmq/topology.js';

export interface RecordStreamDeployment {
  names: TopologyNames;
  /** Where the events end up: equal for every process of one deployment, different for another one. */
  stores: string;
}

/**
 * The stores' identity from their URLs, parsed by the drivers' own parsers (a WHATWG URL throws on a Mongo
 * replica-set list `h1:27017,h2:27017` and on a PostgreSQL socket URL `postgres://u:p@/db?host=/run/pg`).
 * Hosts (sorted), database and schema only: never credentials (they would be visible on the broker, hashed
 * or not). Throws an Error naming the setting when a URL cannot be parsed.
 */
export function storesIdentity(
  c: Pick<Config, 'MONGO_URL' | 'MONGO_DB' | 'POSTGRES_URL' | 'POSTGRES_SCHEMA'>,
): string {
  let mongoHosts: string;
  try {
    mongoHosts = [...new ConnectionString(c.MONGO_URL).hosts]
      .map((h) => h.toLowerCase())
      .sort()
      .join(',');
  } catch (err) {
    throw new Error(`MONGO_URL is not a MongoDB connection string: ${String(err)}`, { cause: err });
  }
  const pg = parsePgUrl(c.POSTGRES_URL);
  const pgHost = `${(pg.host ?? 'localhost').toLowerCase()}:${pg.port || '5432'}`;
  return `mongodb ${mongoHosts}/${c.MONGO_DB}; postgres ${pgHost}/${pg.database ?? ''} schema ${c.POSTGRES_SCHEMA}`;
}

export function recordStreamDeployment(
  c: Pick<Config, 'DEPLOYMENT' | 'MONGO_URL' | 'MONGO_DB' | 'POSTGRES_URL' | 'POSTGRES_SCHEMA'> &
    Partial<Pick<Config, 'AMQP_QUEUE_TYPE'>>,
): RecordStreamDeployment {
  return { names: topologyNames(c.DEPLOYMENT, c.AMQP_QUEUE_TYPE), stores: storesIdentity(c) };
}
