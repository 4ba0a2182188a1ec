/**
 * Worker-thread side of the codec benchmark's throughput rows (bench/codec.bench.ts): what one
 * data-loader worker does per volume — read the record file, check it and decode it into a
 * reused output — in a loop, timed in the worker.
 */
import { readFileSync } from 'node:fs';
import { createDecodeBuffer, decodeVolume, readEncodedInfo } from '../src/volume/codec.ts';

export interface LoopResult {
  /** Wall-clock start and end of the timed loop (ms since the epoch, comparable across threads). */
  start: number;
  end: number;
  /** Milliseconds per volume. */
  times: number[];
  /** Decoded float32 bytes per volume. */
  bytes: number;
}

export type DecodePath = 'js' | 'wasm' | 'wasm-buffer';

/**
 * Reads and decodes `files` round-robin (after `warmup` untimed decodes of each), each with its
 * checksum checked, into one reused output (the files must have the same voxel count), for
 * `durationMs`. `path`: 'js' forces the JavaScript decoder, 'wasm' decodes into an ordinary
 * Float32Array, 'wasm-buffer' into a decode buffer (createDecodeBuffer). `barrier` (a shared
 * counter, zero at first) lines up the timed loops of `parties` threads.
 */
export function decodeLoop(files: string[], durationMs: number, warmup: number, path: DecodePath, barrier: Int32Array, parties: number): LoopResult {
  process.env.VOCO_CODEC_WASM = path === 'js' ? '0' : '1';
  const n = readEncodedInfo(readFileSync(files[0]!)).voxels;
  const out = path === 'wasm-buffer' ? createDecodeBuffer(n, 'float32') : new Float32Array(n);
  for (let i = 0; i < warmup; i++) for (const f of files) decodeVolume(readFileSync(f), { out });
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  for (let v = Atomics.load(barrier, 0); v < parties; v = Atomics.load(barrier, 0)) Atomics.wait(barrier, 0, v, 1000);
  const times: number[] = [];
  const start = performance.timeOrigin + performance.now();
  const stop = performance.now() + durationMs;
  for (let i = 0; performance.now() < stop; i++) {
    const t = performance.now();
    decodeVolume(readFileSync(files[i % files.length]!), { out });
    times.push(performance.now() - t);
  }
  const end = performance.timeOrigin + performance.now();
  return { start, end, times, bytes: n * 4 };
}
