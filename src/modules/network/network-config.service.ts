// Network config versions: each version's body is hashed (SHA-256 of its canonical JSON = the digest nodes
// sync by) and signed by the network key (EIP-191 over "rty-network-config:<version>:<digest>"), so a node
// can check that a config came from the network whichever gateway served it. Versions are append-only.
import { createHash } from 'node:crypto';
import { privateKeyToAccount } from 'viem/accounts';
import { normalizeAddress } from '../../config/vocabulary.js';
import { AppError } from '../../platform/errors.js';
import { withTransaction, type Pool, type PoolClient } from '../../stores/postgres/pool.js';
import { canonicalJson } from './canonical-json.js';
import { eip191 } from './eip191.js';
import { checkPriceSection } from './price-table.js';

export interface NetworkConfigVersion {
  version: number;
  digest: string;
  body: Record<string, unknown>;
  /** 0x… EIP-191 signature of `configSigningText(version, digest)` by the network key. */
  signature: string;
  author: string;
  createdAt: Date;
}

export function configSigningText(version: number, digest: string): string {
  return `rty-network-config:${version}:${digest}`;
}

export function configDigest(body: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(body)).digest('hex')}`;
}

/** Checks a config version against the network's address (what a node does after a sync). */
export async function verifyNetworkConfig(
  c: Pick<NetworkConfigVersion, 'version' | 'digest' | 'body' | 'signature'>,
  networkAddress: string,
): Promise<boolean> {
  if (configDigest(c.body) !== c.digest) return false;
  const signer = await eip191
    .recover(configSigningText(c.version, c.digest), c.signature)
    .catch(() => undefined);
  return signer === normalizeAddress(networkAddress);
}

interface Row {
  version: number;
  digest: string;
  body: Record<string, unknown>;
  signature: string;
  author: string;
  created_at: Date;
}
const toVersion = (r: Row): NetworkConfigVersion => ({
  version: r.version,
  digest: r.digest,
  body: r.body,
  signature: r.signature,
  author: r.author,
  createdAt: r.created_at,
});

export class NetworkConfigService {
  private readonly account;

  constructor(private readonly deps: { pool: Pool; signingKey: `0x${string}` }) {
    this.account = privateKeyToAccount(deps.signingKey);
  }

  /** The address nodes verify config signatures against. */
  get networkAddress(): string {
    return normalizeAddress(this.account.address);
  }

  /**
   * Publishes the next version. `tx` lets the caller commit it together with its audit entry. A body equal to
   * the latest version's is refused (nothing would change for nodes).
   */
  async publish(
    body: Record<string, unknown>,
    author: string,
    tx?: PoolClient,
  ): Promise<NetworkConfigVersion> {
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new AppError('invalid_request', 'a network config body is a JSON object');
    // A bad price table (negative, fractional, unknown keys) is refused here: a signed version is never wrong.
    checkPriceSection(body.prices);
    const digest = configDigest(body);
    const run = async (c: PoolClient) => {
      // One publisher at a time: versions are dense and ordered.
      await c.query(`select pg_advisory_xact_lock(hashtext('rty:network-config:' || current_schema()))`);
      const latest = await c.query<{ version: number; digest: string }>(
        'select version, digest from network_config_versions order by version desc limit 1',
      );
      if (latest.rows[0]?.digest === digest)
        throw new AppError(
          'already_exists',
          `the latest version (${latest.rows[0].version}) already has this body`,
        );
      const version = (latest.rows[0]?.version ?? 0) + 1;
      const signature = await this.account.signMessage({ message: configSigningText(version, digest) });
      const r = await c.query<Row>(
        `insert into network_config_versions (version, digest, body, signature, author)
         values ($1, $2, $3, $4, $5) returning version, digest, body, signature, author, created_at`,
        [version, digest, JSON.stringify(body), signature, author],
      );
      return toVersion(r.rows[0]!);
    };
    return tx ? run(tx) : withTransaction(this.deps.pool, run);
  }

  async latest(): Promise<NetworkConfigVersion | undefined> {
    const r = await this.deps.pool.query<Row>(
      'select version, digest, body, signature, author, created_at from network_config_versions order by version desc limit 1',
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  async list(limit = 50): Promise<NetworkConfigVersion[]> {
    const r = await this.deps.pool.query<Row>(
      'select version, digest, body, signature, author, created_at from network_config_versions order by version desc limit $1',
      [limit],
    );
    return r.rows.map(toVersion);
  }
}
