// pbp32 decode kernel: AssemblyScript compiled to WebAssembly (with SIMD).
//
// The format is described in src/volume/codec.ts (header comment and decodePbpJs/decodePlane, the
// JavaScript decoder this kernel must match bit for bit). The JavaScript driver is
// src/volume/codec-wasm.ts: it lays out the memory (unpack tables, three plane buffers, the segment
// table, the payload, an output area), calls setup(), then seek()/decode() over plane ranges.
//
// Rebuild after editing (the binary is committed next to its driver):
//
//   npm run build:wasm      # = asc wasm/pbp32.ts -O3 --noAssert --enable simd ... -o src/volume/wasm/pbp32.wasm
//
// No runtime, no allocation, no static data: every pointer comes from the driver. The memory is
// imported (env.memory, shared so that a growing memory never detaches views the driver holds).
// Any inconsistency in the stream makes decode() return a non-zero code instead of trapping or
// reading outside the record; the driver then re-runs the JavaScript decoder, which throws the
// precise CacheRecordError. Values are computed with wrapping 32-bit integer arithmetic, which is
// what the JavaScript decoder's stores into an Int32Array amount to, so even a corrupt record
// that passes every check decodes to the same bits in both.

// Error codes (0 = ok).
const E_STATE: i32 = 1; // decode() called out of order / bad arguments
const E_SEGMENT: i32 = 2; // a segment does not start where the segment table says
const E_WORDS: i32 = 3; // blocks need more packed words than the stream has
const E_EXC_META: i32 = 4; // bad exception metadata
const E_EXC_OVERRUN: i32 = 5; // exception bit stream overrun
const E_END: i32 = 6; // totals at the end differ from the header

const B: i32 = 32; // voxels per block
const EXC_POS_BITS: i32 = 5;
/** Widths up to this are unpacked with SIMD (a value must fit 32 bits after a shift of ≤ 7). */
const SIMD_MAX_WIDTH: i32 = 25;

// Unpack tables: for width w and group g (values 4g..4g+3 of a block) at tab + (w·8 + g)·32:
// 16 swizzle indices gathering each lane's 4 bytes, then 4 multipliers 2^(7 − bit offset).
let tab: usize = 0;
// Zigzag-decoded values of a byte: width 2 (4 values, 16 bytes per byte value) and width 1
// (8 values, 32 bytes per byte value). Half of the blocks of a resized CT have width 2.
let lut2: usize = 0;
let lut1: usize = 0;

// The record being decoded (set by setup()).
let hdrP: usize = 0; // one byte per block: predictor << 5 | width
let bmpP: usize = 0; // exception bitmap, one bit per block
let metaP: usize = 0; // two bytes per exception block: count − 1, high width
let metaLen: i32 = 0; // bytes of metadata (2 · exception blocks)
let wordsP: usize = 0; // main stream
let nWords: i32 = 0;
let excP: usize = 0; // exception bit stream
let nExc: i32 = 0; // its words (the last is padding)
let segP: usize = 0; // per segment: first word, first exception block, first exception bit (i32 each)
let segPlanes: i32 = 32;
let nPlanes: i32 = 0;
let YZ: i32 = 0;
let Z: i32 = 0;
let bpp: i32 = 0; // blocks per plane
let cur: usize = 0; // plane being decoded, then the previous two
let p1: usize = 0;
let p2: usize = 0;

// Decoder state (continues across decode() calls).
let plane: i32 = 0; // next plane to decode
let wp: i32 = 0; // next main-stream word
let ecBlock: i32 = 0; // next exception block
let ecBit: i32 = 0; // next bit of the exception stream

/** Where the driver may start laying out memory. */
export function heapBase(): usize {
  return __heap_base;
}

/** Bytes the unpack tables need. */
export function tableBytes(): i32 {
  return 32 * 8 * 32 + 256 * 16 + 256 * 32;
}

/** Fills the unpack tables at `tablePtr` (16-byte aligned, tableBytes() long). */
export function init(tablePtr: usize): void {
  tab = tablePtr;
  for (let w = 0; w < 32; w++) {
    for (let g = 0; g < 8; g++) {
      const t = tab + <usize>((w * 8 + g) * 32);
      const base = (g * w) >> 1; // first byte the group's 16-byte window starts at
      for (let l = 0; l < 4; l++) {
        const bit = (4 * g + l) * w;
        let off = (bit >> 3) - base;
        let sh = bit & 7;
        if (w > SIMD_MAX_WIDTH) {
          off = 0;
          sh = 7;
        }
        for (let b = 0; b < 4; b++) store<u8>(t + <usize>(4 * l + b), <u8>(off + b));
        store<i32>(t + 16 + <usize>(4 * l), 1 << (7 - sh));
      }
    }
  }
  useTables(tablePtr);
  for (let b = 0; b < 256; b++) {
    for (let l = 0; l < 4; l++) store<i32>(lut2 + <usize>(16 * b + 4 * l), zigzag((b >>> (2 * l)) & 3));
    for (let l = 0; l < 8; l++) store<i32>(lut1 + <usize>(32 * b + 4 * l), zigzag((b >>> l) & 1));
  }
}

/** Uses unpack tables that init() filled at `tablePtr` (by another instance on the same memory). */
export function useTables(tablePtr: usize): void {
  tab = tablePtr;
  lut2 = tab + 32 * 8 * 32;
  lut1 = lut2 + 256 * 16;
}

/**
 * Describes the record to decode (byte addresses in memory) and resets the state to plane 0.
 * bufs: three plane buffers of YZ + 32 int32 each, 16-byte aligned, consecutive. Several instances
 * (threads) may decode one record from the same shared memory, each with its own plane buffers.
 */
export function setup(
  hdr: usize,
  bmp: usize,
  meta: usize,
  metaBytes: i32,
  words: usize,
  wordCount: i32,
  exc: usize,
  excWordCount: i32,
  seg: usize,
  segmentPlanes: i32,
  planes: i32,
  planeVoxels: i32,
  stride: i32,
  bufs: usize,
): void {
  hdrP = hdr;
  bmpP = bmp;
  metaP = meta;
  metaLen = metaBytes;
  wordsP = words;
  nWords = wordCount;
  excP = exc;
  nExc = excWordCount;
  segP = seg;
  segPlanes = segmentPlanes;
  nPlanes = planes;
  YZ = planeVoxels;
  Z = stride;
  bpp = (YZ + B - 1) / B;
  const planeBytes = <usize>(YZ + 32) * 4;
  cur = bufs;
  p1 = bufs + planeBytes;
  p2 = bufs + 2 * planeBytes;
  plane = 0;
  wp = 0;
  ecBlock = 0;
  ecBit = 0;
}

/** Positions the state at the start of segment `s` from the segment table. */
export function seek(s: i32): i32 {
  const first = s * segPlanes;
  if (s < 0 || first >= nPlanes) return E_STATE;
  const t = segP + <usize>(12 * s);
  const w = load<i32>(t);
  const eb = load<i32>(t, 4);
  const bit = load<i32>(t, 8);
  if (w < 0 || w > nWords || eb < 0 || 2 * eb > metaLen || bit < 0 || bit > 32 * nExc) return E_SEGMENT;
  plane = first;
  wp = w;
  ecBlock = eb;
  ecBit = bit;
  return 0;
}

/** Resets the state to plane 0 (the start of the record). */
export function restart(): void {
  plane = 0;
  wp = 0;
  ecBlock = 0;
  ecBit = 0;
}

/** Does the state match the segment table's entry for segment s? */
@inline function atSegmentStart(s: i32): bool {
  const t = segP + <usize>(12 * s);
  return load<i32>(t) == wp && load<i32>(t, 4) == ecBlock && load<i32>(t, 8) == ecBit;
}

/**
 * Decodes planes [from, to) (from must be the state's next plane) and writes them one after the
 * other at `out`: float32(q · scale + offset) when mode is 0, the low 16 bits of q when mode is 1.
 * Performs the checks of the JavaScript decoder: segment starts against the table, stream
 * bounds, and at the last plane the totals. Returns 0 or an error code.
 */
export function decode(from: i32, to: i32, out: usize, scale: f64, offset: f64, mode: i32): i32 {
  if (from != plane || to > nPlanes || from > to) return E_STATE;
  const esize: usize = mode == 0 ? 4 : 2;
  // With offset 0 and a scale no product of a non-zero integer can underflow to zero with,
  // q · scale + offset is q · scale to the bit (signed zeros included): skip the addition.
  const noOffset = mode == 0 && offset == 0 && scale > 1e-270;
  for (let pl = from; pl < to; pl++) {
    if (pl % segPlanes == 0) {
      if (!atSegmentStart(pl / segPlanes)) return E_SEGMENT;
      memory.fill(p1, 0, <usize>YZ * 4);
      memory.fill(p2, 0, <usize>YZ * 4);
    }
    const o = out + <usize>(pl - from) * <usize>YZ * esize;
    const r = mode == 0 ? (noOffset ? decodePlaneF32NoOffset(pl * bpp, o, scale) : decodePlaneF32(pl * bpp, o, scale, offset)) : decodePlaneU16(pl * bpp, o);
    if (r != 0) return r;
    const t = p2;
    p2 = p1;
    p1 = cur;
    cur = t;
    plane = pl + 1;
  }
  if (plane == nPlanes) {
    if (wp != nWords || 2 * ecBlock != metaLen) return E_END;
  } else if (plane % segPlanes == 0 && to > from) {
    if (!atSegmentStart(plane / segPlanes)) return E_SEGMENT;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

@inline function zigzag4(v: v128): v128 {
  return v128.xor(i32x4.shr_u(v, 1), i32x4.shr_s(i32x4.shl(v, 31), 31));
}

@inline function zigzag(v: i32): i32 {
  return (v >>> 1) ^ -(v & 1);
}

/** Values 4g..4g+3 of a full block of width w ≤ SIMD_MAX_WIDTH whose words start at src. */
@inline function group(src: usize, t: usize, m: v128, w: i32, g: i32): v128 {
  let v = v128.load(src + <usize>((g * w) >> 1));
  v = i8x16.swizzle(v, v128.load(t + <usize>(g << 5)));
  v = i32x4.mul(v, v128.load(t + <usize>(g << 5), 16));
  return v128.and(i32x4.shr_u(v, 7), m);
}

/**
 * Values 4g..4g+3 of a full block, zigzag-decoded: by table lookup for width 1 (ws = 1) and 2
 * (ws = 2), from 32 values already unpacked at src (ws = 3: blocks with exceptions), zero (ws = 4:
 * width 0), else (ws = 0) with {@link group}.
 */
@inline function unpackGroup(ws: i32, src: usize, t: usize, m: v128, w: i32, g: i32): v128 {
  if (ws == 4) return i32x4.splat(0); // width 0: the prediction is exact
  if (ws == 3) return zigzag4(v128.load(src + (<usize>g << 4))); // unpacked and patched already, at src
  if (ws == 2) return v128.load(lut2 + (<usize>load<u8>(src + <usize>g) << 4));
  if (ws == 1) return v128.load(lut1 + (<usize>load<u8>(src + <usize>(g >> 1)) << 5) + (<usize>(g & 1) << 4));
  return zigzag4(group(src, t, m, w, g));
}

/** Unpacks a full block (32 values of width 1..SIMD_MAX_WIDTH) to dst, zigzag-decoded. */
@inline function unpackSimdZigzag(src: usize, w: i32, dst: usize): void {
  const t = tab + (<usize>w << 8);
  const m = i32x4.splat((1 << w) - 1);
  v128.store(dst, zigzag4(group(src, t, m, w, 0)));
  v128.store(dst, zigzag4(group(src, t, m, w, 1)), 16);
  v128.store(dst, zigzag4(group(src, t, m, w, 2)), 32);
  v128.store(dst, zigzag4(group(src, t, m, w, 3)), 48);
  v128.store(dst, zigzag4(group(src, t, m, w, 4)), 64);
  v128.store(dst, zigzag4(group(src, t, m, w, 5)), 80);
  v128.store(dst, zigzag4(group(src, t, m, w, 6)), 96);
  v128.store(dst, zigzag4(group(src, t, m, w, 7)), 112);
}

/** Unpacks a full block (32 values of width 1..SIMD_MAX_WIDTH) to dst, raw. */
@inline function unpackSimdRaw(src: usize, w: i32, dst: usize): void {
  const t = tab + (<usize>w << 8);
  const m = i32x4.splat((1 << w) - 1);
  v128.store(dst, group(src, t, m, w, 0));
  v128.store(dst, group(src, t, m, w, 1), 16);
  v128.store(dst, group(src, t, m, w, 2), 32);
  v128.store(dst, group(src, t, m, w, 3), 48);
  v128.store(dst, group(src, t, m, w, 4), 64);
  v128.store(dst, group(src, t, m, w, 5), 80);
  v128.store(dst, group(src, t, m, w, 6), 96);
  v128.store(dst, group(src, t, m, w, 7), 112);
}

/** Unpacks len values of width w (1..31) from src to dst, zigzag-decoded when zz. */
function unpackScalar(src: usize, w: i32, len: i32, dst: usize, zz: bool): void {
  const mask = (1 << w) - 1;
  let bit: u32 = 0;
  for (let i = 0; i < len; i++) {
    const v = <i32>(load<u64>(src + <usize>((bit >>> 5) << 2)) >>> (bit & 31)) & mask;
    store<i32>(dst + (<usize>i << 2), zz ? zigzag(v) : v);
    bit += <u32>w;
  }
}

/** The prediction for voxel j of the current plane (any position; neighbours outside the plane are zero). */
function predictAt(k: i32, j: i32): i32 {
  const c = cur;
  const a = j >= 1 ? load<i32>(c + (<usize>(j - 1) << 2)) : 0;
  const b = j >= Z ? load<i32>(c + (<usize>(j - Z) << 2)) : 0;
  const d = load<i32>(p1 + (<usize>j << 2));
  switch (k) {
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return d;
    case 4:
      return j >= Z ? b + d - load<i32>(p1 + (<usize>(j - Z) << 2)) : d;
    case 5:
      return j >= 2 * Z ? 2 * b - load<i32>(c + (<usize>(j - 2 * Z) << 2)) : b;
    case 6: {
      const ab = j >= Z + 1 ? load<i32>(c + (<usize>(j - Z - 1) << 2)) : 0;
      const da = j >= 1 ? load<i32>(p1 + (<usize>(j - 1) << 2)) : 0;
      const db = j >= Z ? load<i32>(p1 + (<usize>(j - Z) << 2)) : 0;
      const dab = j >= Z + 1 ? load<i32>(p1 + (<usize>(j - Z - 1) << 2)) : 0;
      return a + b + d - ab - da - db + dab;
    }
    case 7:
      return 2 * d - load<i32>(p2 + (<usize>j << 2));
    default:
      return 0;
  }
}

/** Broadcasts lane 3. */
@inline function last(x: v128): v128 {
  return i32x4.shuffle(x, x, 3, 3, 3, 3);
}

/** Inclusive prefix sum of the four lanes plus carry. */
@inline function prefix(x: v128, carry: v128): v128 {
  const z = i32x4.splat(0);
  x = i32x4.add(x, i32x4.shuffle(z, x, 0, 4, 5, 6));
  x = i32x4.add(x, i32x4.shuffle(z, x, 0, 1, 4, 5));
  return i32x4.add(x, carry);
}

/**
 * Adds the prediction to the residuals of the full interior block at voxel j0 (j0 ≥ 2Z, Z ≥ 4,
 * so every neighbour a lane needs was reconstructed before its group of four).
 */
function predictInteriorSimd(k: i32, j0: i32): void {
  const c = cur + (<usize>j0 << 2);
  const d = p1 + (<usize>j0 << 2);
  const zb = <usize>Z << 2;
  switch (k) {
    case 1: {
      let carry = v128.load32_splat(c - 4);
      for (let g: usize = 0; g < 128; g += 16) {
        const x = prefix(v128.load(c + g), carry);
        v128.store(c + g, x);
        carry = last(x);
      }
      break;
    }
    case 2:
      for (let g: usize = 0; g < 128; g += 16) v128.store(c + g, i32x4.add(v128.load(c + g), v128.load(c + g - zb)));
      break;
    case 3:
      for (let g: usize = 0; g < 128; g += 16) v128.store(c + g, i32x4.add(v128.load(c + g), v128.load(d + g)));
      break;
    case 4:
      for (let g: usize = 0; g < 128; g += 16) {
        const p = i32x4.sub(i32x4.add(v128.load(c + g - zb), v128.load(d + g)), v128.load(d + g - zb));
        v128.store(c + g, i32x4.add(v128.load(c + g), p));
      }
      break;
    case 5:
      for (let g: usize = 0; g < 128; g += 16) {
        const b = v128.load(c + g - zb);
        const p = i32x4.sub(i32x4.add(b, b), v128.load(c + g - 2 * zb));
        v128.store(c + g, i32x4.add(v128.load(c + g), p));
      }
      break;
    case 6: {
      let carry = v128.load32_splat(c - 4);
      for (let g: usize = 0; g < 128; g += 16) {
        // r + b − ab + d − da − db + dab, then the running sum over a (the previous voxel)
        let t = i32x4.add(v128.load(c + g), i32x4.sub(v128.load(c + g - zb), v128.load(c + g - zb - 4)));
        t = i32x4.add(t, i32x4.sub(v128.load(d + g), v128.load(d + g - 4)));
        t = i32x4.add(t, i32x4.sub(v128.load(d + g - zb - 4), v128.load(d + g - zb)));
        const x = prefix(t, carry);
        v128.store(c + g, x);
        carry = last(x);
      }
      break;
    }
    case 7: {
      const e = p2 + (<usize>j0 << 2);
      for (let g: usize = 0; g < 128; g += 16) {
        const dd = v128.load(d + g);
        const p = i32x4.sub(i32x4.add(dd, dd), v128.load(e + g));
        v128.store(c + g, i32x4.add(v128.load(c + g), p));
      }
      break;
    }
    default:
      break;
  }
}

/** Writes float32(q · scale + offset) of 4 lanes at o (float64 arithmetic, then rounded once). */
@inline function emitF32x4(x: v128, o: usize, s: v128, off: v128): void {
  const lo = f64x2.add(f64x2.mul(f64x2.convert_low_i32x4_s(x), s), off);
  const hi = f64x2.add(f64x2.mul(f64x2.convert_low_i32x4_s(i32x4.shuffle(x, x, 2, 3, 2, 3)), s), off);
  v128.store(o, i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
}

/** Writes the 4 lanes of x to o: float32(x · scale + offset) in mode 0 (mode 2: offset 0), the low 16 bits in mode 1. */
@inline function emit4(mode: i32, x: v128, o: usize, s: v128, off: v128): void {
  if (mode == 0) emitF32x4(x, o, s, off);
  else if (mode == 2) emitF32x4NoOffset(x, o, s);
  else v128.store64_lane(o, i8x16.shuffle(x, x, 0, 1, 4, 5, 8, 9, 12, 13, 0, 1, 4, 5, 8, 9, 12, 13), 0);
}

/**
 * One full interior block without exceptions, fused: unpack (SIMD), add the prediction, store
 * the levels to the plane and emit them, four voxels at a time. Needs w ≤ SIMD_MAX_WIDTH,
 * j0 ≥ 2Z and Z ≥ 4 (every neighbour a lane reads was reconstructed before its group).
 */
@inline function fusedBlock(mode: i32, ws: i32, k: i32, w: i32, src: usize, j0: i32, o: usize, s: v128, off: v128): void {
  const t = tab + (<usize>w << 8);
  const m = i32x4.splat((1 << w) - 1);
  const c = cur + (<usize>j0 << 2);
  const d = p1 + (<usize>j0 << 2);
  const zb = <usize>Z << 2;
  const es: usize = mode != 1 ? 16 : 8; // output bytes per group
  switch (k) {
    case 0:
      for (let g = 0; g < 8; g++) {
        const x = unpackGroup(ws, src, t, m, w, g);
        v128.store(c + (<usize>g << 4), x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    case 1: {
      let carry = v128.load32_splat(c - 4);
      for (let g = 0; g < 8; g++) {
        const x = prefix(unpackGroup(ws, src, t, m, w, g), carry);
        v128.store(c + (<usize>g << 4), x);
        emit4(mode, x, o + <usize>g * es, s, off);
        carry = last(x);
      }
      break;
    }
    case 2:
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const x = i32x4.add(unpackGroup(ws, src, t, m, w, g), v128.load(q - zb));
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    case 3:
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const x = i32x4.add(unpackGroup(ws, src, t, m, w, g), v128.load(d + (<usize>g << 4)));
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    case 4:
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const dq = d + (<usize>g << 4);
        const p = i32x4.sub(i32x4.add(v128.load(q - zb), v128.load(dq)), v128.load(dq - zb));
        const x = i32x4.add(unpackGroup(ws, src, t, m, w, g), p);
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    case 5:
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const b = v128.load(q - zb);
        const p = i32x4.sub(i32x4.add(b, b), v128.load(q - 2 * zb));
        const x = i32x4.add(unpackGroup(ws, src, t, m, w, g), p);
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    case 6: {
      let carry = v128.load32_splat(c - 4);
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const dq = d + (<usize>g << 4);
        let r = i32x4.add(unpackGroup(ws, src, t, m, w, g), i32x4.sub(v128.load(q - zb), v128.load(q - zb - 4)));
        r = i32x4.add(r, i32x4.sub(v128.load(dq), v128.load(dq - 4)));
        r = i32x4.add(r, i32x4.sub(v128.load(dq - zb - 4), v128.load(dq - zb)));
        const x = prefix(r, carry);
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
        carry = last(x);
      }
      break;
    }
    default: {
      const e = p2 + (<usize>j0 << 2);
      for (let g = 0; g < 8; g++) {
        const q = c + (<usize>g << 4);
        const dd = v128.load(d + (<usize>g << 4));
        const p = i32x4.sub(i32x4.add(dd, dd), v128.load(e + (<usize>g << 4)));
        const x = i32x4.add(unpackGroup(ws, src, t, m, w, g), p);
        v128.store(q, x);
        emit4(mode, x, o + <usize>g * es, s, off);
      }
      break;
    }
  }
}

/** The first block start at which predictor k can take the fused SIMD path (see decodePlaneT). */
@inline function fusedStart(k: i32, start1: i32, startZ: i32, startZ1: i32, start2Z: i32): i32 {
  if (k == 0 || k == 3 || k == 7) return 0; // only the previous planes
  if (k == 1) return start1;
  if (k == 5) return start2Z;
  if (k == 6) return startZ1;
  return startZ; // 2, 4
}

/** {@link emitF32x4} for offset 0: float32(q · scale). */
@inline function emitF32x4NoOffset(x: v128, o: usize, s: v128): void {
  const lo = f64x2.mul(f64x2.convert_low_i32x4_s(x), s);
  const hi = f64x2.mul(f64x2.convert_low_i32x4_s(i32x4.shuffle(x, x, 2, 3, 2, 3)), s);
  v128.store(o, i32x4.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
}

/** Decodes one plane (its first block is blk) into cur and writes it to out (float32, offset 0). */
function decodePlaneF32NoOffset(blk: i32, out: usize, scale: f64): i32 {
  return decodePlaneT(2, blk, out, scale, 0);
}

/** Decodes one plane (its first block is blk) into cur and writes it to out (float32). */
function decodePlaneF32(blk: i32, out: usize, scale: f64, offset: f64): i32 {
  return decodePlaneT(0, blk, out, scale, offset);
}

/** Decodes one plane (its first block is blk) into cur and writes it to out (uint16). */
function decodePlaneU16(blk: i32, out: usize): i32 {
  return decodePlaneT(1, blk, out, 1, 0);
}

@inline function decodePlaneT(mode: i32, blk: i32, out: usize, scale: f64, offset: f64): i32 {
  // First voxel from which predictor k reads only reconstructed neighbours inside the plane
  // (and, with Z ≥ 4, none from its own group of four): the fused SIMD path applies from there.
  const never = 0x7fffffff;
  const inPlane = Z >= 4;
  const start1 = inPlane ? 1 : never;
  const startZ = inPlane ? Z : never;
  const startZ1 = inPlane ? Z + 1 : never;
  const start2Z = inPlane ? 2 * Z : never;
  const s = f64x2.splat(scale);
  const off = f64x2.splat(offset);
  const eshift: usize = mode != 1 ? 2 : 1;
  // What a zero level emits, for runs of zero blocks.
  const zeroOut = mode != 1 ? f32x4.splat(<f32>(<f64>0 * scale + offset)) : i32x4.splat(0);
  for (let j0 = 0; j0 < YZ; j0 += B, blk++) {
    const h = <i32>load<u8>(hdrP + <usize>blk);
    const w = h & 31;
    const k = h >>> 5;
    const end = j0 + B < YZ ? j0 + B : YZ;
    const len = end - j0;
    const hasExc = (<i32>load<u8>(bmpP + <usize>(blk >>> 3)) >>> (blk & 7)) & 1;
    const c = cur + (<usize>j0 << 2);
    const o = out + (<usize>j0 << eshift);
    if (hasExc == 0 && len == B && w <= SIMD_MAX_WIDTH && (j0 >= start2Z || j0 >= fusedStart(k, start1, startZ, startZ1, start2Z))) {
      // The fused path, dispatched once on (width class, predictor): one indirect branch per
      // block instead of a chain of hard-to-predict ones.
      if (w > nWords - wp) return E_WORDS; // a full block of width w takes w words
      const src = wordsP + (<usize>wp << 2);
      const wc = select<i32>(2, select<i32>(1, select<i32>(3, 0, w == 0), w == 1), w == 2);
      switch ((wc << 3) | k) {
        case 0: fusedBlock(mode, 0, 0, w, src, j0, o, s, off); break;
        case 1: fusedBlock(mode, 0, 1, w, src, j0, o, s, off); break;
        case 2: fusedBlock(mode, 0, 2, w, src, j0, o, s, off); break;
        case 3: fusedBlock(mode, 0, 3, w, src, j0, o, s, off); break;
        case 4: fusedBlock(mode, 0, 4, w, src, j0, o, s, off); break;
        case 5: fusedBlock(mode, 0, 5, w, src, j0, o, s, off); break;
        case 6: fusedBlock(mode, 0, 6, w, src, j0, o, s, off); break;
        case 7: fusedBlock(mode, 0, 7, w, src, j0, o, s, off); break;
        case 8: fusedBlock(mode, 1, 0, w, src, j0, o, s, off); break;
        case 9: fusedBlock(mode, 1, 1, w, src, j0, o, s, off); break;
        case 10: fusedBlock(mode, 1, 2, w, src, j0, o, s, off); break;
        case 11: fusedBlock(mode, 1, 3, w, src, j0, o, s, off); break;
        case 12: fusedBlock(mode, 1, 4, w, src, j0, o, s, off); break;
        case 13: fusedBlock(mode, 1, 5, w, src, j0, o, s, off); break;
        case 14: fusedBlock(mode, 1, 6, w, src, j0, o, s, off); break;
        case 15: fusedBlock(mode, 1, 7, w, src, j0, o, s, off); break;
        case 16: fusedBlock(mode, 2, 0, w, src, j0, o, s, off); break;
        case 17: fusedBlock(mode, 2, 1, w, src, j0, o, s, off); break;
        case 18: fusedBlock(mode, 2, 2, w, src, j0, o, s, off); break;
        case 19: fusedBlock(mode, 2, 3, w, src, j0, o, s, off); break;
        case 20: fusedBlock(mode, 2, 4, w, src, j0, o, s, off); break;
        case 21: fusedBlock(mode, 2, 5, w, src, j0, o, s, off); break;
        case 22: fusedBlock(mode, 2, 6, w, src, j0, o, s, off); break;
        case 23: fusedBlock(mode, 2, 7, w, src, j0, o, s, off); break;
        case 24: {
          // predictor 0, width 0: all zero
          const z = i32x4.splat(0);
          for (let g: usize = 0; g < 128; g += 16) v128.store(c + g, z);
          for (let g: usize = 0; g < (<usize>B << eshift); g += 16) v128.store(o + g, zeroOut);
          break;
        }
        case 25: fusedBlock(mode, 4, 1, w, src, j0, o, s, off); break;
        case 26: fusedBlock(mode, 4, 2, w, src, j0, o, s, off); break;
        case 27: fusedBlock(mode, 4, 3, w, src, j0, o, s, off); break;
        case 28: fusedBlock(mode, 4, 4, w, src, j0, o, s, off); break;
        case 29: fusedBlock(mode, 4, 5, w, src, j0, o, s, off); break;
        case 30: fusedBlock(mode, 4, 6, w, src, j0, o, s, off); break;
        case 31: fusedBlock(mode, 4, 7, w, src, j0, o, s, off); break;
        default: break;
      }
      wp += w;
      continue;
    }
    if (w == 0) {
      memory.fill(c, 0, <usize>len << 2);
    } else {
      const n = (len * w + 31) >>> 5;
      if (n > nWords - wp) return E_WORDS;
      const src = wordsP + (<usize>wp << 2);
      if (len == B && w <= SIMD_MAX_WIDTH) {
        if (hasExc == 0) unpackSimdZigzag(src, w, c);
        else unpackSimdRaw(src, w, c);
      } else {
        unpackScalar(src, w, len, c, hasExc == 0);
      }
      wp += n;
    }
    if (hasExc != 0) {
      const m = 2 * ecBlock;
      if (m + 1 >= metaLen) return E_EXC_META;
      ecBlock++;
      const e = <i32>load<u8>(metaP + <usize>m) + 1;
      const xw = EXC_POS_BITS + <i32>load<u8>(metaP + <usize>m + 1);
      if (e > len || xw > 31) return E_EXC_META;
      const mask = (1 << xw) - 1;
      let bit = <u32>ecBit;
      if (<i32>((bit + <u32>((e - 1) * xw)) >>> 5) + 1 >= nExc) return E_EXC_OVERRUN;
      for (let i = 0; i < e; i++, bit += <u32>xw) {
        const x = <i32>(load<u64>(excP + <usize>((bit >>> 5) << 2)) >>> (bit & 31)) & mask;
        const pos = x & 31;
        // The JavaScript decoder's write past the plane end (a partial block) is a no-op.
        if (pos < len) {
          const q = c + (<usize>pos << 2);
          store<i32>(q, load<i32>(q) | ((x >>> EXC_POS_BITS) << w));
        }
      }
      ecBit = <i32>bit;
      if (len == B && j0 >= fusedStart(k, start1, startZ, startZ1, start2Z)) {
        // zigzag, predict and emit in one pass, as for blocks without exceptions
        fusedBlock(mode, 3, k, w, c, j0, o, s, off);
        continue;
      }
      for (let i = 0; i < len; i++) {
        const q = c + (<usize>i << 2);
        store<i32>(q, zigzag(load<i32>(q)));
      }
    }
    if (k != 0) {
      if (len == B && j0 >= start2Z) {
        predictInteriorSimd(k, j0);
      } else {
        for (let j = j0; j < end; j++) {
          const q = cur + (<usize>j << 2);
          store<i32>(q, load<i32>(q) + predictAt(k, j));
        }
      }
    }
    if (len == B) {
      for (let g: usize = 0; g < 8; g++) emit4(mode, v128.load(c + (g << 4)), o + (g << (eshift + 2)), s, off);
    } else if (mode != 1) {
      for (let i = 0; i < len; i++) {
        store<f32>(o + (<usize>i << 2), <f32>(<f64>load<i32>(c + (<usize>i << 2)) * scale + offset));
      }
    } else {
      for (let i = 0; i < len; i++) store<u16>(o + (<usize>i << 1), <u16>load<i32>(c + (<usize>i << 2)));
    }
  }
  return 0;
}
