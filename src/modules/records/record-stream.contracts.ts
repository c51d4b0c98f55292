// The envelope (version 1) of record events on RabbitMQ: one message carries one or more records-contract
// events; each event is parsed by the recorder itself, so one bad event never hides the others.
import { z } from 'zod';

export const RECORD_BATCH_VERSION = 1;
/** Events per message the publisher packs at most (the consumer accepts up to this many too). */
export const RECORD_BATCH_MAX_EVENTS = 1000;

export const recordBatchSchema = z.object({
  v: z.literal(RECORD_BATCH_VERSION),
  events: z.array(z.unknown()).min(1).max(RECORD_BATCH_MAX_EVENTS),
});
export type RecordBatch = z.infer<typeof recordBatchSchema>;

/** Encodes already-serialized events (the publisher serializes each once, to size the batch). */
export function encodeRecordBatch(serializedEvents: readonly string[]): Buffer {
  return Buffer.from(`{"v":${RECORD_BATCH_VERSION},"events":[${serializedEvents.join(',')}]}`);
}

/** Parses what the consumer receives; a reason instead of throwing when the body breaks the envelope. */
export function decodeRecordBatch(body: Buffer): { batch: RecordBatch } | { error: string } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return { error: 'not JSON' };
  }
  const r = recordBatchSchema.safeParse(json);
  if (r.success) return { batch: r.data };
  return {
    error: r.error.issues.map((x) => `${x.path.join('.') || '(message)'}: ${x.message}`).join('; '),
  };
}
