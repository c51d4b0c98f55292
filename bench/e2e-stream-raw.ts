// The raw floor of a streamed token for `bench stream`: the least a relay between a node's WebSocket and a
// client's SSE response can do in Node (no auth, no parsing beyond JSON, no stores). Run as its own process,
// like the backbone: prints `RAW READY <port>`; a node socket on /node sends {id, text} frames, and each is
// written at once to the SSE response of GET /s/<id>.
import { createServer, type ServerResponse } from 'node:http';
import { WebSocketServer } from 'ws';

const streams = new Map<string, ServerResponse>();
const server = createServer((req, res) => {
  const id = /^\/s\/([\w-]+)$/.exec(req.url ?? '')?.[1];
  if (!id) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  streams.set(id, res);
  req.on('close', () => streams.delete(id));
});
const wss = new WebSocketServer({ server, path: '/node' });
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { id: string; text?: string; end?: boolean };
    const res = streams.get(f.id);
    if (!res) return;
    if (f.end) {
      res.end('data: [DONE]\n\n');
      streams.delete(f.id);
    } else res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: f.text } }] })}\n\n`);
  });
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`RAW READY ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
