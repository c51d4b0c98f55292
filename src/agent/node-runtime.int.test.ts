// The upstream runtime against a loopback OpenAI-compatible server: the request is forwarded with the model
// and the output budget; the answer and usage come back as a node result; an error status fails the job.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamRuntime } from './node-runtime.js';

let upstream: Server;
let url: string;
const seen: Array<{ path: string; body: Record<string, unknown> }> = [];

beforeAll(async () => {
  upstream = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, unknown>;
      seen.push({ path: req.url ?? '', body });
      res.setHeader('content-type', 'application/json');
      if (body.model === 'broken') return res.writeHead(503).end('{"error":"busy"}');
      if (req.url === '/v1/embeddings')
        return res.end(JSON.stringify({ data: [{ embedding: [0.5, -0.5] }], usage: { prompt_tokens: 2 } }));
      if (req.url === '/v1/chat/completions')
        return res.end(
          JSON.stringify({
            choices: [{ message: { content: 'hi there' }, finish_reason: 'length' }],
            usage: { prompt_tokens: 3, completion_tokens: 2 },
          }),
        );
      res.end(
        JSON.stringify({ choices: [{ text: 'done', finish_reason: 'stop' }], usage: { prompt_tokens: 1 } }),
      );
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => upstream?.close(r));
});

describe('upstream runtime', () => {
  it('forwards chat, completion and embedding requests and maps answers and usage', async () => {
    const rt = new UpstreamRuntime(url);
    const chat = await rt.run('llama3-8b', {
      kind: 'chat',
      body: { messages: [{ role: 'user', content: 'hello' }], stream: true },
      maxTokens: 2,
    });
    expect(chat).toEqual({ tokensIn: 3, tokensOut: 2, output: 'hi there', finishReason: 'length' });
    expect(seen.at(-1)).toEqual({
      path: '/v1/chat/completions',
      body: {
        messages: [{ role: 'user', content: 'hello' }],
        model: 'llama3-8b',
        stream: false,
        max_tokens: 2,
      },
    });
    expect(await rt.run('m', { kind: 'completion', body: { prompt: 'x' }, maxTokens: 4 })).toEqual({
      tokensIn: 1,
      tokensOut: 0,
      output: 'done',
      finishReason: 'stop',
    });
    const emb = await rt.run('e', { kind: 'embedding', body: { input: 'ab' }, maxTokens: 1 });
    expect(emb).toEqual({ tokensIn: 2, tokensOut: 0, output: '', embeddings: [[0.5, -0.5]] });
    await expect(rt.run('broken', { kind: 'completion', body: {}, maxTokens: 1 })).rejects.toThrow(/503/);
  });
});
