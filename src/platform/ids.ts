// Identifiers: UUIDs for rows, random URL-safe tokens for secrets.
import { randomBytes, randomUUID } from 'node:crypto';

export function newId(): string {
  return randomUUID();
}

export function randomToken(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}
