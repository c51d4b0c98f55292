// Config parsing: defaults, units, frozen result, a clear message for a bad value.
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

describe('config', () => {
  it('gives local defaults and a frozen object', () => {
    const c = loadConfig({});
    expect(c.POSTGRES_URL).toBe('postgres://postgres@127.0.0.1:5432/rty');
    expect(c.LEDGER_BATCH_MAX_WAIT_MS).toBe(2);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('coerces numbers and names the variable to fix when a value is bad', () => {
    expect(loadConfig({ POSTGRES_POOL_SIZE: '12' }).POSTGRES_POOL_SIZE).toBe(12);
    expect(() => loadConfig({ POSTGRES_POOL_SIZE: 'many' })).toThrow(/POSTGRES_POOL_SIZE/);
    expect(() => loadConfig({ LEDGER_HOLD_TIMEOUT_MS: '5' })).toThrow(/LEDGER_HOLD_TIMEOUT_MS.*got "5"/s);
    expect(() => loadConfig({ REDIS_URL: 'http://x' })).toThrow(/REDIS_URL: a redis:\/\/ URL/);
    // A cluster's brokers as a list: every part must be an amqp:// URL (a password is never echoed).
    const nodes = 'amqp://u:p@127.0.0.1:5672/v, amqp://u:p@127.0.0.1:5673/v';
    expect(loadConfig({ AMQP_URL: nodes }).AMQP_URL).toBe(nodes);
    expect(() => loadConfig({ AMQP_URL: 'amqp://u:secretpw@h/v,http://h' })).toThrow(
      /AMQP_URL: an amqp:\/\/ URL, or several separated by commas \(got <redacted>\)/,
    );
    expect(() => loadConfig({ AMQP_QUEUE_TYPE: 'mirrored' })).toThrow(/AMQP_QUEUE_TYPE/);
    expect(loadConfig({ AMQP_QUEUE_TYPE: 'quorum' }).AMQP_QUEUE_TYPE).toBe('quorum');
    // A bad secret is named but never echoed.
    expect(() => loadConfig({ ADMIN_TOKEN: 'short-secret' })).toThrow(/ADMIN_TOKEN: .*got <redacted>/);
    expect(() => loadConfig({ ADMIN_TOKEN: 'short-secret' })).not.toThrow(/short-secret/);
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/API_KEY_PEPPER: must be set/);
    // Production refuses every development default secret, each by name.
    const secrets = {
      API_KEY_PEPPER: 'a-real-secret-of-some-length',
      ADMIN_TOKEN: 'a-real-admin-token-of-some-length',
      NETWORK_SIGNING_KEY: `0x${'ab'.repeat(32)}`,
    };
    for (const name of Object.keys(secrets) as Array<keyof typeof secrets>) {
      const { [name]: _missing, ...rest } = secrets;
      expect(() => loadConfig({ NODE_ENV: 'production', ...rest })).toThrow(
        new RegExp(`${name}: must be set`),
      );
    }
    expect(loadConfig({ NODE_ENV: 'production', ...secrets }).NODE_ENV).toBe('production');
  });
});
