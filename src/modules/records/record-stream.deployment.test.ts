// The stores identity of a deployment from URLs a WHATWG URL cannot parse (replica sets, socket paths).
import { describe, expect, it } from 'vitest';
import { recordStreamDeployment, storesIdentity } from './record-stream.deployment.js';

const base = { MONGO_DB: 'rty', POSTGRES_SCHEMA: 'public', DEPLOYMENT: 'alpha' };

describe('records deployment stores identity', () => {
  it('parses a replica-set MongoDB URL with credentials and a PostgreSQL socket URL, without credentials', () => {
    const id = storesIdentity({
      ...base,
      MONGO_URL: 'mongodb://u:p@h2:27017,H1:27017/rty?replicaSet=rs0',
      POSTGRES_URL: 'postgres://u:p@/rty?host=/var/run/postgresql',
    });
    expect(id).toBe('mongodb h1:27017,h2:27017/rty; postgres /var/run/postgresql:5432/rty schema public');
    expect(id).not.toMatch(/u:p|\bp@/);
    expect(
      recordStreamDeployment({ ...base, MONGO_URL: 'mongodb://h1', POSTGRES_URL: 'postgres://h/db' }).names
        .queues.records,
    ).toBe('alpha.rty.records');
  });

  it('is the same for the same stores whatever the credentials or host order, different for another database', () => {
    const a = storesIdentity({
      ...base,
      MONGO_URL: 'mongodb://a:x@h1:27017,h2:27017/?replicaSet=rs0',
      POSTGRES_URL: 'postgresql://a:x@db.local:5433/rty',
    });
    const b = storesIdentity({
      ...base,
      MONGO_URL: 'mongodb://b:y@h2:27017,h1:27017/?replicaSet=rs0',
      POSTGRES_URL: 'postgresql://b:y@db.local:5433/rty',
    });
    expect(a).toBe(b);
    expect(
      storesIdentity({
        ...base,
        MONGO_DB: 'other',
        MONGO_URL: 'mongodb://h1',
        POSTGRES_URL: 'postgres://db.local/rty',
      }),
    ).not.toBe(
      storesIdentity({ ...base, MONGO_URL: 'mongodb://h1', POSTGRES_URL: 'postgres://db.local/rty' }),
    );
  });

  it('names MONGO_URL when it is not a connection string', () => {
    expect(() => storesIdentity({ ...base, MONGO_URL: 'http://x', POSTGRES_URL: 'postgres://h/db' })).toThrow(
      /MONGO_URL/,
    );
  });
});
