/**
 * The safetensors format, read and written from its description:
 *   8 bytes    N, the header length, unsigned little-endian 64-bit
 *   N bytes    a UTF-8 JSON object: { "__metadata__"?: {string: string},
 *              "<name>": { "dtype": "F32"|…, "shape": [..], "data_offsets": [begin, end] }, … }
 *              (offsets are relative to the start of the data section); writers pad it with
 *              spaces so the data section starts 8-byte aligned
 *   rest       the data section: each tensor's bytes, little-endian, C order, with no gaps
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../util/atomic-write.ts';
import {
  DTYPES,
  formatShape,
  isDType,
  numel,
  tensorBytes,
  typedArrayFromBytes,
  type DType,
  type StateDict,
  type TensorData,
} from './state-dict.ts';

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const TO_CODE: Record<DType, string> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};
const FROM_CODE: Record<string, DType> = Object.fromEntries(Object.entries(TO_CODE).map(([k, v]) => [v, k as DType]));

export function safetensorsDtype(dtype: DType): string {
  return TO_CODE[dtype];
}

/** Header lengths above this are refused (the reference implementation uses the same bound). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface Safetensors {
  dict: StateDict;
  /** The `__metadata__` string map (empty if absent). */
  metadata: Record<string, string>;
}

/** Parses a safetensors file held in memory. Tensors are copied out of `bytes`. */
export function parseSafetensors(bytes: Uint8Array, name = 'safetensors file'): Safetensors {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${name}: ${msg}`);
  };
  if (bytes.length < 8) fail(`too short to be a safetensors file (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} is implausible; not a safetensors file?`);
  const n = Number(n64);
  if (8 + n > bytes.length) fail(`header length ${n} runs past the end of the file (${bytes.length} bytes): truncated?`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object');
  const data = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const entries: Array<{ key: string; dtype: DType; shape: number[]; begin: number; end: number }> = [];
  for (const [key, v] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('__metadata__ must be an object of strings');
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__.${mk} must be a string`);
        metadata[mk] = mv as string;
      }
      continue;
    }
    const info = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = FROM_CODE[String(info?.dtype)];
    if (!dtype) fail(`tensor ${JSON.stringify(key)} has unsupported dtype ${JSON.stringify(info?.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(`tensor ${JSON.stringify(key)} has a bad shape ${JSON.stringify(shape)}`);
    }
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
      fail(`tensor ${JSON.stringify(key)} has bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    const expected = numel(shape as number[]) * DTYPES[dtype!].bytes;
    if (end - begin !== expected) {
      fail(`tensor ${JSON.stringify(key)}: ${dtype} ${formatShape(shape as number[])} needs ${expected} bytes, data_offsets span ${end - begin}`);
    }
    if (end > data.length) {
      fail(`tensor ${JSON.stringify(key)} ends at byte ${end} of a ${data.length}-byte data section: truncated?`);
    }
    entries.push({ key, dtype: dtype!, shape: shape as number[], begin, end });
  }
  // The data section must be covered exactly, without overlaps or holes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) fail(`tensor ${JSON.stringify(e.key)} starts at ${e.begin}, expected ${at} (overlap or gap in the data section)`);
    at = e.end;
  }
  if (at !== data.length) fail(`the data section has ${data.length - at} bytes after the last tensor`);
  const dict: StateDict = new Map();
  for (const e of entries) {
    dict.set(e.key, { dtype: e.dtype, shape: [...e.shape], data: typedArrayFromBytes(e.dtype, data.subarray(e.begin, e.end)) });
  }
  return { dict, metadata };
}

/** Reads a safetensors file from a path, or parses bytes. */
export async function readSafetensors(src: string | Uint8Array): Promise<Safetensors> {
  if (typeof src !== 'string') return parseSafetensors(src);
  const buf = await readFile(src);
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), src);
}

/**
 * Serialises a state dict: tensors laid out in sorted key order (by UTF-16 code unit, which equals
 * byte order for ASCII names), header keys sorted likewise with `__metadata__` first, header padded
 * with spaces to a multiple of 8 bytes.
 */
export function serializeSafetensors(dict: StateDict, metadata?: Record<string, string>): Uint8Array {
  const keys = [...dict.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    const m: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== 'string') throw new SafetensorsError(`metadata ${k} must be a string`);
      m[k] = metadata[k]!;
    }
    header.__metadata__ = m;
  }
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const k of keys) {
    if (k === '__metadata__') throw new SafetensorsError('a tensor cannot be named __metadata__');
    const t = dict.get(k)! as TensorData;
    if (!isDType(t.dtype)) throw new SafetensorsError(`tensor ${k}: unknown dtype ${String(t.dtype)}`);
    if (t.data.length !== numel(t.shape)) {
      throw new SafetensorsError(`tensor ${k}: shape ${formatShape(t.shape)} needs ${numel(t.shape)} elements, has ${t.data.length}`);
    }
    const b = tensorBytes(t);
    header[k] = { dtype: TO_CODE[t.dtype], shape: t.shape, data_offsets: [offset, offset + b.length] };
    parts.push(b);
    offset += b.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes atomically: a temporary file in the same folder, fsynced, then renamed over `path`. */
export async function writeSafetensors(path: string, dict: StateDict, metadata?: Record<string, string>): Promise<void> {
  const bytes = serializeSafetensors(dict, metadata);
  await writeFileAtomic(path, bytes);
}
