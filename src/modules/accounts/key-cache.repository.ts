// SQL the API key cache needs beyond the accounts repository: a key's public prefix by id.
import type { Queryable } from '../../stores/postgres/pool.js';

export async function findApiKeyPrefix(
  db: Queryable,
  namespaceId: string,
  keyId: string,
): Promise<string | undefined> {
  const r = await db.query<{ prefix: string }>(
    'select prefix from api_keys where id = $1 and namespace_id = $2',
    [keyId, namespaceId],
  );
  return r.rows[0]?.prefix;
}
