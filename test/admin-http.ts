// The Admin API over HTTP for tests that drive whole backbone processes: a POST with the admin token that
// fails with the status and body when the answer is not a success.
export async function adminPost<T>(url: string, token: string, path: string, body: unknown): Promise<T> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}
