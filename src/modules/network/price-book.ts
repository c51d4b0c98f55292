// The price table in force, held in process memory with its config version: every job submit quotes from here
// (no statement per job); one read of the latest config version per process per PRICE_TABLE_REFRESH_MS keeps it
// current, and the process that publishes a version refreshes at once.
import type { Logger } from '../../platform/logger.js';
import { priceOf, priceTableOf, type Prices, type PriceTable, type QuotedPrice } from './price-table.js';

export class PriceBook {
  private table: PriceTable | undefined;
  private atMs = 0;
  private refreshing: Promise<PriceTable> | undefined;

  constructor(
    private readonly deps: {
      /** The latest config version (undefined: none published yet). */
      latest: () => Promise<{ version: number; body: Record<string, unknown> } | undefined>;
      /** What a config without a `prices` section charges (PRICE_PER_TOKEN_MICRO × 1000 per 1k tokens). */
      flat: Prices;
      refreshMs: number;
      log: Logger;
    },
  ) {}

  /** The price of a job submitted now (see priceOf). */
  async quote(model: string, environment: string, subcloud: string | null): Promise<QuotedPrice> {
    return priceOf(await this.current(), model, environment, subcloud);
  }

  /**
   * The table in force. A copy older than the refresh interval serves while a fresh one is read; one older
   * than twice the interval (after an idle spell) is waited for. So a process quotes a version published
   * elsewhere at most 2 × PRICE_TABLE_REFRESH_MS after its publication (and the job records which it used).
   */
  async current(): Promise<PriceTable> {
    const age = Date.now() - this.atMs;
    if (!this.table || age >= 2 * this.deps.refreshMs) return this.refresh();
    if (age >= this.deps.refreshMs && !this.refreshing) void this.refresh().catch(() => undefined);
    return this.table;
  }

  /** Reads the latest version now (one read at a time; callers meanwhile share it). */
  refresh(): Promise<PriceTable> {
    if (this.refreshing) return this.refreshing;
    const p = this.load().finally(() => {
      if (this.refreshing === p) this.refreshing = undefined;
    });
    this.refreshing = p;
    return p;
  }

  private async load(): Promise<PriceTable> {
    let latest: Awaited<ReturnType<typeof this.deps.latest>>;
    try {
      latest = await this.deps.latest();
    } catch (err) {
      // A failed read keeps the table this process has (its submits need PostgreSQL anyway).
      this.deps.log.warn({ err }, 'price table not refreshed');
      if (this.table) return this.table;
      throw err;
    }
    const version = latest?.version ?? 0;
    let table: PriceTable;
    try {
      table = priceTableOf(version, latest?.body.prices, this.deps.flat);
    } catch (err) {
      // Only a version published before tables were checked can get here: it prices at the flat rate.
      this.deps.log.error({ err, version }, 'config version has an invalid price table; flat prices apply');
      table = priceTableOf(version, undefined, this.deps.flat);
    }
    // A read that started before a newer version was loaded never puts the older one back.
    if (!this.table || table.version >= this.table.version) this.table = table;
    this.atMs = Date.now();
    return this.table;
  }
}
