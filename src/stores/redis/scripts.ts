// Loads the Lua scripts of scripts/*.lua (with _lib.lua prepended) and runs them by EVALSHA,
// falling back to EVAL (which caches the script) after a Redis restart or SCRIPT FLUSH.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../platform/paths.js';
import type { Redis } from './client.js';

export const scriptNames = [
  'live_heartbeat',
  'live_select_lease',
  'live_select_check',
  'live_release',
  'live_sweep',
  'live_flag',
  'live_subclouds',
  'live_session',
  'live_reputation',
  'rate_limit',
  'gw_release',
] as const;
export type ScriptName = (typeof scriptNames)[number];

export interface LuaScript {
  name: ScriptName;
  source: string;
  sha: string;
}

export type LuaReply = string | number | null | LuaReply[];

const scriptsDir = (): string => join(projectRoot(), 'src', 'stores', 'redis', 'scripts');

let cache: Map<ScriptName, LuaScript> | undefined;

/** Reads every script once per process (sources are immutable at run time). */
export function loadScripts(): Map<ScriptName, LuaScript> {
  if (cache) return cache;
  const lib = readFileSync(join(scriptsDir(), '_lib.lua'), 'utf8');
  cache = new Map(
    scriptNames.map((name) => {
      const source = `${lib}\n${readFileSync(join(scriptsDir(), `${name}.lua`), 'utf8')}`;
      return [name, { name, source, sha: createHash('sha1').update(source).digest('hex') }];
    }),
  );
  return cache;
}

export function getScript(name: ScriptName): LuaScript {
  return loadScripts().get(name)!;
}

/** Runs a script by its SHA; on NOSCRIPT (restart, flush of the script cache) sends the source once. */
export async function runScript(
  redis: Redis,
  script: LuaScript,
  keys: string[],
  args: Array<string | number>,
): Promise<LuaReply> {
  try {
    return (await redis.evalsha(script.sha, keys.length, ...keys, ...args)) as LuaReply;
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
      return (await redis.eval(script.source, keys.length, ...keys, ...args)) as LuaReply;
    }
    throw err;
  }
}
