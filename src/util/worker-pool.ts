import { Worker } from 'node:worker_threads';

interface Job {
  id: number;
  module: string;
  fn: string;
  args: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** An error thrown inside a worker, with its original name, message and any file/field it named. */
export class WorkerTaskError extends Error {
  constructor(
    message: string,
    readonly originalName?: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = originalName ?? 'WorkerTaskError';
  }
}

/**
 * Runs exported functions of TypeScript modules on a fixed number of worker threads, so CPU-heavy
 * item work (decoding, resampling, encoding volumes) uses every core granted to a stage.
 */
export class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly all: Worker[] = [];
  private readonly queue: Job[] = [];
  private readonly running = new Map<Worker, Job>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number) {
    for (let i = 0; i < Math.max(1, size); i++) this.spawn();
  }

  private spawn(): void {
    const w = new Worker(new URL('./worker-entry.js', import.meta.url), { execArgv: [] }); // inherited flags such as --input-type would stop it starting
    w.on('message', (msg: { id: number; ok: boolean; result?: unknown; error?: { message: string; name?: string; file?: string; field?: string } }) => {
      const job = this.running.get(w);
      this.running.delete(w);
      this.idle.push(w);
      if (job) {
        if (msg.ok) job.resolve(msg.result);
        else job.reject(new WorkerTaskError(msg.error!.message, msg.error!.name, msg.error!.file, msg.error!.field));
      }
      this.pump();
    });
    w.on('error', (e: Error) => {
      const job = this.running.get(w);
      this.running.delete(w);
      this.all.splice(this.all.indexOf(w), 1);
      job?.reject(e);
      if (!this.closed) {
        this.spawn();
        this.pump();
      }
    });
    this.all.push(w);
    this.idle.push(w);
  }

  /** Calls `fn(...args)` exported by `module` (a file URL) in a worker. */
  run<T>(module: URL | string, fn: string, args: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, module: String(module), fn, args, resolve: resolve as (v: unknown) => void, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.postMessage({ id: job.id, module: job.module, fn: job.fn, args: job.args });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('worker pool closed'));
    await Promise.all(this.all.map((w) => w.terminate()));
  }
}
