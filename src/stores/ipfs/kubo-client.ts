// The Kubo HTTP RPC API (/api/v0) as cold storage needs it: import a CAR with its roots pinned, export a DAG as a CAR
// stream, read one block, pin state, unpin, version. Every call is a POST (Kubo refuses GET on the RPC API); errors name the call.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { AppError } from '../../platform/errors.js';

export interface ImportedRoot {
  cid: string;
  pinError: string;
}

export class KuboClient {
  private readonly base: string;

  constructor(apiUrl: string) {
    this.base = apiUrl.replace(/\/+$/, '');
  }

  get description(): string {
    return `ipfs:${this.base}`;
  }

  private async call(
    path: string,
    params: Record<string, string>,
    body?: RequestInit['body'],
  ): Promise<Response> {
    const url = `${this.base}/api/v0/${path}?${new URLSearchParams(params)}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        body,
        ...(body ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      throw new AppError(
        'store_unavailable',
        `IPFS node at ${this.base} does not answer (${(err as Error).message})`,
      );
    }
    return res;
  }

  private async fail(path: string, res: Response): Promise<never> {
    const text = await res.text().catch(() => '');
    let msg = text;
    try {
      msg = (JSON.parse(text) as { Message?: string }).Message ?? text;
    } catch {
      /* a plain-text error body */
    }
    throw new AppError('store_unavailable', `IPFS ${path} failed (${res.status}): ${msg.slice(0, 300)}`);
  }

  async version(): Promise<string> {
    const res = await this.call('version', {});
    if (!res.ok) await this.fail('version', res);
    return ((await res.json()) as { Version: string }).Version;
  }

  /** `dag/import` of a CAR file with its roots pinned; returns the roots Kubo reports (their pin errors too). */
  async importCar(path: string): Promise<ImportedRoot[]> {
    const boundary = `rty${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`;
    async function* multipart(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="snapshot.car"\r\n` +
          'Content-Type: application/vnd.ipld.car\r\n\r\n',
      );
      for await (const chunk of createReadStream(path)) yield chunk as Buffer;
      yield Buffer.from(`\r\n--${boundary}--\r\n`);
    }
    const res = await fetch(
      `${this.base}/api/v0/dag/import?${new URLSearchParams({ 'pin-roots': 'true', stats: 'false' })}`,
      {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: Readable.toWeb(Readable.from(multipart())) as ReadableStream,
        duplex: 'half',
      } as RequestInit,
    ).catch((err: Error) => {
      throw new AppError('store_unavailable', `IPFS node at ${this.base} does not answer (${err.message})`);
    });
    if (!res.ok) await this.fail('dag/import', res);
    const roots: ImportedRoot[] = [];
    for (const line of (await res.text()).split('\n')) {
      if (!line.trim()) continue;
      const v = JSON.parse(line) as { Root?: { Cid: { '/': string }; PinErrorMsg?: string } };
      if (v.Root) roots.push({ cid: v.Root.Cid['/'], pinError: v.Root.PinErrorMsg ?? '' });
    }
    return roots;
  }

  /** The DAG under `cid` as a CAR stream (`dag/export`); Kubo reads only its own blocks (the node runs offline). */
  async exportCar(cid: string): Promise<Readable> {
    const res = await this.call('dag/export', { arg: cid });
    if (!res.ok || !res.body) await this.fail('dag/export', res);
    return Readable.fromWeb(res.body as never);
  }

  /** One block's raw bytes (`block/get`), or undefined when the node does not hold it (it runs offline). */
  async getBlock(cid: string): Promise<Uint8Array | undefined> {
    const res = await this.call('block/get', { arg: cid });
    if (res.ok) return new Uint8Array(await res.arrayBuffer());
    const text = await res.text();
    if (/not found|could not find/i.test(text)) return undefined;
    throw new AppError('store_unavailable', `IPFS block/get failed (${res.status}): ${text.slice(0, 300)}`);
  }

  /** Whether `cid` is pinned recursively on the node. */
  async isPinned(cid: string): Promise<boolean> {
    const res = await this.call('pin/ls', { arg: cid, type: 'recursive' });
    if (res.ok) return true;
    const text = await res.text();
    if (/not pinned|not found|no link named/i.test(text)) return false;
    throw new AppError('store_unavailable', `IPFS pin/ls failed (${res.status}): ${text.slice(0, 300)}`);
  }

  async unpin(cid: string): Promise<void> {
    const res = await this.call('pin/rm', { arg: cid });
    if (!res.ok) {
      const text = await res.text();
      if (!/not pinned/i.test(text))
        throw new AppError('store_unavailable', `IPFS pin/rm failed (${res.status}): ${text.slice(0, 300)}`);
    }
  }
}
