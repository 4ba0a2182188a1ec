import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, readSafetensors, SafetensorsError, serializeSafetensors, writeSafetensors } from '../../../src/models/weights/safetensors.ts';
import type { StateDict, TensorData } from '../../../src/models/weights/state-dict.ts';
import { readTorchCheckpoint } from '../../../src/models/weights/torch-load.ts';
import { tempDir } from '../../helpers.ts';
import { FS12_PT, fs12Keys } from './fixtures.ts';

const bytesOf = (t: TensorData) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function header(file: Uint8Array): { n: number; json: string } {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { n, json: new TextDecoder().decode(file.subarray(8, 8 + n)) };
}

function everyDtype(): StateDict {
  return new Map<string, TensorData>([
    ['z.f64', { dtype: 'float64', shape: [2], data: Float64Array.from([Math.PI, -0]) }],
    ['a.f32', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, Number.NaN, Infinity, 1e-45]) }],
    ['f16', { dtype: 'float16', shape: [1], data: Uint16Array.from([0x3c00]) }],
    ['bf16', { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([0x3f80, 0x4049, 0xff80]) }],
    ['i64', { dtype: 'int64', shape: [2, 1], data: BigInt64Array.from([-(2n ** 62n), 2196n]) }],
    ['i32', { dtype: 'int32', shape: [1], data: Int32Array.from([-7]) }],
    ['i16', { dtype: 'int16', shape: [1], data: Int16Array.from([-300]) }],
    ['i8', { dtype: 'int8', shape: [2], data: Int8Array.from([-128, 127]) }],
    ['u8', { dtype: 'uint8', shape: [1], data: Uint8Array.from([255]) }],
    ['mask', { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) }],
    ['empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) }],
    ['scalar', { dtype: 'float32', shape: [], data: Float32Array.from([42]) }],
  ]);
}

describe('safetensors', () => {
  it('writes the exact bytes of a one-tensor file', () => {
    const out = serializeSafetensors(new Map([['a', { dtype: 'float32', shape: [2], data: Float32Array.from([1, 2]) } as TensorData]]));
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; // 54 bytes → two spaces of padding
    const expected = Buffer.concat([
      Buffer.from([56, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(`${json}  `),
      Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40]),
    ]);
    expect(Buffer.from(out).equals(expected)).toBe(true);
  });

  it('round-trips every dtype, empty and 0-d tensors and metadata exactly', () => {
    const dict = everyDtype();
    const file = serializeSafetensors(dict, { format: 'pt', note: 'ü' });
    const { n, json } = header(file);
    expect(n % 8).toBe(0);
    expect(json).toMatch(/ *$/);
    const h = JSON.parse(json) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const keys = Object.keys(h);
    expect(keys[0]).toBe('__metadata__');
    expect(keys.slice(1)).toEqual([...dict.keys()].sort());
    expect(h['i64']).toEqual({ dtype: 'I64', shape: [2, 1], data_offsets: expect.any(Array) });
    expect(Object.values(h).slice(1).map((v) => v.dtype)).toEqual(['F32', 'BF16', 'F32', 'F16', 'I16', 'I32', 'I64', 'I8', 'BOOL', 'F32', 'U8', 'F64']);
    // data laid out in sorted key order, contiguous
    let at = 0;
    for (const k of keys.slice(1)) {
      expect(h[k]!.data_offsets[0]).toBe(at);
      at = h[k]!.data_offsets[1];
    }
    expect(8 + n + at).toBe(file.length);

    const back = parseSafetensors(file);
    expect(back.metadata).toEqual({ format: 'pt', note: 'ü' });
    expect(back.dict.size).toBe(dict.size);
    for (const [k, t] of dict) {
      const u = back.dict.get(k)!;
      expect([u.dtype, u.shape]).toEqual([t.dtype, t.shape]);
      expect(u.data.constructor).toBe(t.data.constructor);
      expect(bytesOf(u).equals(bytesOf(t))).toBe(true);
    }
    // serialising again gives the same file
    expect(Buffer.from(serializeSafetensors(back.dict, back.metadata)).equals(Buffer.from(file))).toBe(true);
  });

  it('rejects malformed files with clear messages', () => {
    const good = serializeSafetensors(new Map([['a', { dtype: 'float32', shape: [2], data: Float32Array.from([1, 2]) } as TensorData]]));
    const bad = (f: Uint8Array) => () => parseSafetensors(f, 'w.safetensors');
    expect(bad(good.subarray(0, 5))).toThrow('w.safetensors: too short to be a safetensors file (5 bytes)');
    expect(bad(good.subarray(0, 40))).toThrow('w.safetensors: header length 56 runs past the end of the file (40 bytes): truncated?');
    expect(bad(good.subarray(0, good.length - 1))).toThrow('w.safetensors: tensor "a" ends at byte 8 of a 7-byte data section: truncated?');
    expect(bad(Uint8Array.from([...good, 0]))).toThrow('the data section has 1 bytes after the last tensor');
    expect(bad(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))).toThrow('header length 4294967295 is implausible');
    const mk = (json: string, data = 8) => {
      const j = new TextEncoder().encode(json);
      const f = new Uint8Array(8 + j.length + data);
      new DataView(f.buffer).setBigUint64(0, BigInt(j.length), true);
      f.set(j, 8);
      return f;
    };
    expect(bad(mk('{"a": 1'))).toThrow('the header is not valid JSON');
    expect(bad(mk('{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}'))).toThrow('tensor "a" has unsupported dtype "F8_E4M3"');
    expect(bad(mk('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'))).toThrow('tensor "a": float32 (3,) needs 12 bytes, data_offsets span 8');
    expect(bad(mk('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'))).toThrow(
      'overlap or gap in the data section',
    );
    expect(bad(mk('{"__metadata__":{"n":1}}', 0))).toThrow('__metadata__.n must be a string');
  });

  it('writes atomically and reads back from a path', async () => {
    const dir = tempDir('voco-st-');
    const p = join(dir, 'w.safetensors');
    writeFileSync(p, 'old');
    await writeSafetensors(p, everyDtype(), { a: 'b' });
    expect(readdirSync(dir)).toEqual(['w.safetensors']); // no temp file left behind
    const { dict, metadata } = await readSafetensors(p);
    expect(metadata).toEqual({ a: 'b' });
    expect(Array.from(dict.get('i64')!.data as BigInt64Array)).toEqual([-(2n ** 62n), 2196n]);
    // a failed write leaves the old file alone
    await expect(writeSafetensors(p, new Map([['x', { dtype: 'float32', shape: [3], data: new Float32Array(2) } as TensorData]]))).rejects.toThrow(
      SafetensorsError,
    );
    expect(readdirSync(dir)).toEqual(['w.safetensors']);
    expect((await readSafetensors(readFileSync(p))).dict.size).toBe(12);
  });

  describe('from the SwinUNETR .pt', () => {
    let pt: StateDict;
    beforeAll(async () => {
      pt = (await readTorchCheckpoint(FS12_PT)).dict;
    });

    it('.pt → safetensors → read gives identical bytes for all 167 tensors', async () => {
      const dir = tempDir('voco-st-');
      const p = join(dir, 'fs12.safetensors');
      await writeSafetensors(p, pt, { format: 'pt' });
      expect(existsSync(p)).toBe(true);
      const { dict, metadata } = await readSafetensors(p);
      expect(metadata).toEqual({ format: 'pt' });
      const ref = fs12Keys();
      expect(dict.size).toBe(167);
      for (const k of ref.keys) {
        const a = pt.get(k.key)!;
        const b = dict.get(k.key)!;
        expect([b.dtype, b.shape]).toEqual([k.dtype, k.shape]);
        expect(bytesOf(b).equals(bytesOf(a))).toBe(true);
      }
      // 4,739,180 float32 + 8 × 343² int64, plus the header
      const { n } = header(readFileSync(p));
      expect(readFileSync(p).length).toBe(8 + n + 4_739_180 * 4 + 8 * 117_649 * 8);
    });
  });
});
