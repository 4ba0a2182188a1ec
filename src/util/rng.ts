import { createHash } from 'node:crypto';

/**
 * Seeded random generator (xoshiro128**). The algorithm is ours rather than a library's on
 * purpose: its output sequence is part of voco's reproducibility contract (cache keys assume the
 * same seed gives the same bytes), so a dependency upgrade must never be able to change it.
 */
export interface Rng {
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform float in [0, 1) with 32 bits of randomness. */
  float(): number;
  /** Uniform integer in [min, max) (max exclusive). */
  int(min: number, max: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** Standard normal draw (Box–Muller). */
  normal(): number;
  /** Fisher–Yates shuffle, in place; returns the array. */
  shuffle<T>(items: T[]): T[];
  /** The generator state, to save in a checkpoint. */
  getState(): [number, number, number, number];
  setState(state: readonly number[]): void;
}

/** Derives 128 bits of seed from the pipeline seed and a path such as (stage, item, crop). */
export function deriveSeed(seed: number | string, ...path: Array<string | number>): [number, number, number, number] {
  const digest = createHash('sha256').update(JSON.stringify([String(seed), ...path.map(String)])).digest();
  const words: [number, number, number, number] = [
    digest.readUInt32LE(0),
    digest.readUInt32LE(4),
    digest.readUInt32LE(8),
    digest.readUInt32LE(12),
  ];
  if (words.every((w) => w === 0)) words[0] = 1; // xoshiro must not start from all zeros
  return words;
}

/** A generator for (seed, ...path): the same arguments always give the same sequence. */
export function createRng(seed: number | string, ...path: Array<string | number>): Rng {
  return rngFromState(deriveSeed(seed, ...path));
}

export function rngFromState(initial: readonly number[]): Rng {
  if (initial.length !== 4) throw new Error('rng state must have 4 words');
  const s = Uint32Array.from(initial);
  const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  let spareNormal: number | null = null;

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  };
  const float = () => nextUint32() / 4294967296;

  return {
    nextUint32,
    float,
    int(min, max) {
      if (!(max > min)) throw new Error(`rng.int: empty range [${min}, ${max})`);
      return min + Math.floor(float() * (max - min));
    },
    chance(p) {
      return float() < p;
    },
    normal() {
      if (spareNormal !== null) {
        const v = spareNormal;
        spareNormal = null;
        return v;
      }
      let u = 0;
      while (u === 0) u = float();
      const v = float();
      const r = Math.sqrt(-2 * Math.log(u));
      spareNormal = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    shuffle(items) {
      for (let i = items.length - 1; i > 0; i--) {
        const j = Math.floor(float() * (i + 1));
        [items[i], items[j]] = [items[j]!, items[i]!];
      }
      return items;
    },
    getState() {
      return [s[0]!, s[1]!, s[2]!, s[3]!];
    },
    setState(state) {
      if (state.length !== 4) throw new Error('rng state must have 4 words');
      s.set(state.map((x) => x >>> 0));
      spareNormal = null;
    },
  };
}
