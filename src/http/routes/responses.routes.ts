// `POST /v1/responses`: the OpenAI Responses API, stateless (no stored responses, no previous_response_id), as
// a chat job on the Cloud API's submission path, answered as a `response` object or its typed event stream.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { SubmitChat } from './cloud.answer.js';
import { submitHeaders } from './cloud.contracts.js';
import { responsesBody } from './responses.contracts.js';
import { echoOf, renderResponse } from './responses.render.js';
import { chatBodyOf } from './responses.request.js';
import { ResponseStream } from './responses.stream.js';

export function responsesRoutes(deps: { submitChat: SubmitChat }): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/v1/responses',
      {
        schema: { tags: ['cloud'], security: [{ apiKey: [] }], body: responsesBody, headers: submitHeaders },
      },
      async (req, reply) => {
        const echo = echoOf(req.body);
        return deps.submitChat(req, reply, chatBodyOf(req.body), {
          openStream: ({ streams, jobId, onReset, onDisconnect }) =>
            ResponseStream.open(streams, { jobId, echo, onReset, onDisconnect }),
          render: (r) => renderResponse(r, echo),
          // A polled job's view renders chat.completion; Responses clients expect `background`, not offered here.
          noPolling:
            'x-rty-mode: polling is not offered on /v1/responses (background responses are not supported); ' +
            'use /v1/chat/completions to poll a job',
        });
      },
    );
  };
}
