import { threadId } from 'node:worker_threads';

export async function fill(value: number, n: number): Promise<{ threadId: number; data: Float32Array }> {
  await new Promise((r) => setTimeout(r, 50));
  return { threadId, data: new Float32Array(n).fill(value) };
}

export function fail(file: string): never {
  throw Object.assign(new Error(`${file}: dim[1] is 0`), { file, field: 'dim' });
}
