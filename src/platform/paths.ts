// Locates the project root (the folder with package.json) from any source or built file.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function projectRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

export const postgresMigrationsDir = (): string => join(projectRoot(), 'migrations', 'postgres');
export const mongoMigrationsDir = (): string => join(projectRoot(), 'migrations', 'mongo');
