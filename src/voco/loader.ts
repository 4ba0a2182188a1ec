/**
 * Prefetching VoCo crop loader: batches of VoCo samples from cached volume records, produced on
 * worker threads (loader-worker.ts) a few batches ahead of the trainer.
 *
 * Determinism: batch g (global index, counted over epochs) is fully determined by (seed, g):
 * - epoch e = ⌊g / batchesPerEpoch⌋ visits the items in Fisher–Yates order drawn from
 *   createRng(seed, 'order', e) ('shuffle') or in list order ('sequential');
 * - batch b of the epoch takes order positions [b·B, (b + 1)·B) (B = batchVolumes); the last
 *   incomplete batch of an epoch is dropped (drop_last), so batchesPerEpoch = ⌊items / B⌋;
 * - the item at position `slot` samples its crops with createRng(seed, 'crop', e, id, slot).
 * Nothing depends on the worker count or on timing, so any `workers` gives the same bytes, and
 * `startBatch: n` yields exactly batches n, n + 1, … of an uninterrupted run.
 *
 * Work split: one batch is one task; a worker reads, decodes and samples the batch's volumes
 * straight into the packed batch arrays and transfers them, so the calling thread (the trainer's)
 * only receives finished batches. max(prefetch, workers) batches are kept in flight.
 *
 * Errors: a volume that cannot be read, decoded or sampled rejects that batch's `next()` with
 * a message naming the item id and file (a crashed worker: every item of the batch); the loader
 * stays usable (the following call moves on to the next batch).
 */
import { WorkerPool } from '../util/worker-pool.ts';
import { createRng } from '../util/rng.ts';
import { validateAugmentation, type CropAugmentation } from './augment.ts';
import { validateGeometry, type VocoGeometry } from './geometry.ts';
import { loadVocoBatch, type VocoBatchTask } from './loader-worker.ts';
import type { VocoBatchArrays } from './sample.ts';

export { VocoItemError, volumeRng } from './loader-worker.ts';

export interface VocoLoaderItem {
  id: string;
  /** A volume record file in the cache codec format (codec.ts), shape [1, ...region]. */
  path: string;
}

export type EpochOrder = 'shuffle' | 'sequential';

export interface VocoLoaderOptions {
  items: readonly VocoLoaderItem[];
  geometry: VocoGeometry;
  augmentation: CropAugmentation;
  seed: number | string;
  /** Volumes per batch (B). */
  batchVolumes: number;
  epochOrder: EpochOrder;
  /** Worker threads; 0 samples in the calling thread, on demand. */
  workers: number;
  /**
   * Batches in flight ahead of the consumer (workers > 0). Each batch is one worker task, so
   * at least `workers` batches are kept in flight whatever this says (every worker busy).
   */
  prefetch: number;
  /** First global batch index to yield (resume); default 0. */
  startBatch?: number;
  /** Global batch index to stop before (exclusive); default: never stop. */
  endBatch?: number;
  /** Check each record's checksum (default true). */
  verify?: boolean;
}

export interface VocoBatch extends VocoBatchArrays {
  /** Global batch index (over all epochs). */
  batchIndex: number;
  epoch: number;
  /** Batch index within the epoch. */
  batchInEpoch: number;
  itemIds: string[];
}

/** Batches per epoch with the last incomplete one dropped. */
export function batchesPerEpoch(itemCount: number, batchVolumes: number): number {
  return Math.floor(itemCount / batchVolumes);
}

/** The item indices of epoch `epoch` in visiting order. */
export function epochItemOrder(itemCount: number, seed: number | string, epoch: number, mode: EpochOrder): number[] {
  const order = Array.from({ length: itemCount }, (_, i) => i);
  return mode === 'shuffle' ? createRng(seed, 'order', epoch).shuffle(order) : order;
}

function validateOptions(o: VocoLoaderOptions): void {
  const problems: string[] = [];
  const isInt = (v: unknown, min: number) => Number.isInteger(v) && (v as number) >= min;
  if (!Array.isArray(o.items) || o.items.length === 0) problems.push('items must be a non-empty list of { id, path }');
  else {
    o.items.forEach((it, i) => {
      if (typeof it?.id !== 'string' || typeof it?.path !== 'string') problems.push(`items[${i}] must be { id: string, path: string }, got ${JSON.stringify(it)}`);
    });
  }
  if (!isInt(o.batchVolumes, 1)) problems.push(`batchVolumes must be a positive integer, got ${JSON.stringify(o.batchVolumes)}`);
  else if (Array.isArray(o.items) && o.items.length > 0 && o.items.length < o.batchVolumes) {
    problems.push(`batchVolumes ${o.batchVolumes} is more than the ${o.items.length} items: with drop_last no batch would ever be complete`);
  }
  if (o.epochOrder !== 'shuffle' && o.epochOrder !== 'sequential') problems.push(`epochOrder must be "shuffle" or "sequential", got ${JSON.stringify(o.epochOrder)}`);
  if (!isInt(o.workers, 0)) problems.push(`workers must be an integer ≥ 0, got ${JSON.stringify(o.workers)}`);
  if (!isInt(o.prefetch, 1)) problems.push(`prefetch must be a positive integer, got ${JSON.stringify(o.prefetch)}`);
  if (o.startBatch !== undefined && !isInt(o.startBatch, 0)) problems.push(`startBatch must be an integer ≥ 0, got ${JSON.stringify(o.startBatch)}`);
  if (o.endBatch !== undefined && !isInt(o.endBatch, 0)) problems.push(`endBatch must be an integer ≥ 0, got ${JSON.stringify(o.endBatch)}`);
  if (typeof o.seed !== 'number' && typeof o.seed !== 'string') problems.push(`seed must be a number or string, got ${JSON.stringify(o.seed)}`);
  if (problems.length > 0) throw new Error(`invalid VoCo crop loader options:\n  - ${problems.join('\n  - ')}`);
  validateGeometry(o.geometry);
  validateAugmentation(o.augmentation);
}

const WORKER_MODULE = new URL('./loader-worker.ts', import.meta.url);

export class VocoCropLoader implements AsyncIterableIterator<VocoBatch> {
  readonly batchesPerEpoch: number;
  private readonly opts: VocoLoaderOptions;
  private readonly pool: WorkerPool | null;
  private readonly inFlight: Promise<VocoBatch>[] = [];
  private readonly orders = new Map<number, number[]>();
  private nextToStart: number;
  private closed = false;
  private rejectClosed!: (e: Error) => void;
  private readonly closedSignal: Promise<never>;

  constructor(options: VocoLoaderOptions) {
    validateOptions(options);
    this.opts = { ...options, items: options.items.map((it) => ({ id: it.id, path: it.path })) };
    this.batchesPerEpoch = batchesPerEpoch(this.opts.items.length, this.opts.batchVolumes);
    this.nextToStart = options.startBatch ?? 0;
    this.closedSignal = new Promise<never>((_, reject) => (this.rejectClosed = reject));
    this.closedSignal.catch(() => {});
    this.pool = options.workers > 0 ? new WorkerPool(options.workers) : null;
    if (this.pool) this.fill();
  }

  /** Items and slots of global batch `batchIndex`. */
  planBatch(batchIndex: number): { epoch: number; batchInEpoch: number; entries: { item: VocoLoaderItem; slot: number }[] } {
    const epoch = Math.floor(batchIndex / this.batchesPerEpoch);
    const batchInEpoch = batchIndex % this.batchesPerEpoch;
    let order = this.orders.get(epoch);
    if (!order) {
      order = epochItemOrder(this.opts.items.length, this.opts.seed, epoch, this.opts.epochOrder);
      this.orders.set(epoch, order);
      for (const e of this.orders.keys()) if (e < epoch - 1) this.orders.delete(e);
    }
    const B = this.opts.batchVolumes;
    const entries = [];
    for (let v = 0; v < B; v++) {
      const slot = batchInEpoch * B + v;
      entries.push({ item: this.opts.items[order[slot]!]!, slot });
    }
    return { epoch, batchInEpoch, entries };
  }

  private task(batchIndex: number): { task: VocoBatchTask; batchInEpoch: number; itemIds: string[] } {
    const { geometry, augmentation, seed, verify } = this.opts;
    const { epoch, batchInEpoch, entries } = this.planBatch(batchIndex);
    const volumes = entries.map(({ item, slot }) => ({ id: item.id, path: item.path, slot }));
    return { task: { volumes, geometry, augmentation, seed, epoch, verify: verify ?? true }, batchInEpoch, itemIds: volumes.map((v) => v.id) };
  }

  private async produce(batchIndex: number): Promise<VocoBatch> {
    const { task, batchInEpoch, itemIds } = this.task(batchIndex);
    let arrays: VocoBatchArrays;
    if (!this.pool) arrays = loadVocoBatch(task);
    else {
      try {
        arrays = await this.pool.run<VocoBatchArrays>(WORKER_MODULE, 'loadVocoBatch', [task]);
      } catch (e) {
        const err = e as Error;
        if (err?.name === 'VocoItemError') throw err; // already names the item and file
        const names = task.volumes.map((v) => `"${v.id}" (${v.path})`).join(', ');
        throw new Error(`voco crop loader: batch ${batchIndex} with items ${names}: worker failed: ${err?.message ?? String(e)}`, { cause: e });
      }
    }
    return { batchIndex, epoch: task.epoch, batchInEpoch, itemIds, ...arrays };
  }

  private get end(): number {
    return this.opts.endBatch ?? Infinity;
  }

  private fill(): void {
    const depth = Math.max(this.opts.prefetch, this.opts.workers);
    while (this.inFlight.length < depth && this.nextToStart < this.end) {
      const p = this.produce(this.nextToStart++);
      p.catch(() => {}); // surfaced by next(); this only keeps an early failure from being "unhandled"
      this.inFlight.push(p);
    }
  }

  /** The next batch, or done once `endBatch` is reached. */
  async next(): Promise<IteratorResult<VocoBatch>> {
    if (this.closed) throw new Error('voco crop loader: next() after close()');
    if (!this.pool) {
      if (this.nextToStart >= this.end) return { done: true, value: undefined };
      return { done: false, value: await this.produce(this.nextToStart++) };
    }
    this.fill();
    const head = this.inFlight.shift();
    if (!head) return { done: true, value: undefined };
    this.fill();
    return { done: false, value: await Promise.race([head, this.closedSignal]) };
  }

  /** The next batch; throws once `endBatch` is reached. */
  async nextBatch(): Promise<VocoBatch> {
    const r = await this.next();
    if (r.done) throw new Error(`voco crop loader: no batches left (endBatch ${this.opts.endBatch})`);
    return r.value;
  }

  /** Ends a `for await` loop early: closes the loader. */
  async return(): Promise<IteratorResult<VocoBatch>> {
    await this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Stops the workers; batches still in flight are dropped and a pending next() rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectClosed(new Error('voco crop loader closed'));
    this.inFlight.length = 0;
    await this.pool?.close();
  }
}

/** Starts a loader (workers begin prefetching right away). */
export function createVocoLoader(options: VocoLoaderOptions): VocoCropLoader {
  return new VocoCropLoader(options);
}
