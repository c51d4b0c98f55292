// How a route on the Cloud API's submission path answers in another API's shapes than chat.completion (the
// Responses API uses it): its streamed answer and its non-streamed body.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JobResult, JobStreams } from '../../modules/jobs/index.js';
import type { ChatCompletionBody } from './cloud.contracts.js';
import type { ChunkStream } from './cloud.stream.js';

/** A streamed answer as the submission drives it (ChunkStream's surface). */
export type ResultStream = Pick<ChunkStream, 'start' | 'started' | 'finish' | 'fail' | 'close'>;

/** How a route answers in another API's shapes than chat.completion. */
export interface AnswerShape {
  /** Opens the streamed answer (listening to the job's deltas before it is submitted). */
  openStream: (o: {
    streams: JobStreams;
    jobId: string;
    onReset: (reason: string) => void;
    onDisconnect: (delivered: number) => void;
  }) => Promise<ResultStream>;
  /** The non-streamed answer of a succeeded job. */
  render: (r: JobResult) => unknown;
  /** Why polling (`x-rty-mode: polling`) is refused here, if it is. */
  noPolling?: string;
}

/** Runs a chat job through the Cloud API's one submission path (auth, rate limit, reserve, wait, settle). */
export type SubmitChat = (
  req: FastifyRequest,
  reply: FastifyReply,
  body: ChatCompletionBody,
  shape: AnswerShape,
) => Promise<unknown>;
