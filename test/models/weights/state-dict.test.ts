import { describe, expect, it } from 'vitest';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  gatherStrided,
  makeTensor,
  normalizeStateDict,
  toFloat32,
  type TensorData,
} from '../../../src/models/weights/state-dict.ts';

const f32 = (values: number[], shape = [values.length]): TensorData => ({ dtype: 'float32', shape, data: Float32Array.from(values) });

describe('toFloat32', () => {
  it('decodes float16 bit patterns', () => {
    const h: TensorData = { dtype: 'float16', shape: [8], data: Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x7c00, 0xfc00, 0x0000]) };
    const out = toFloat32(h);
    expect(Array.from(out)).toEqual([1, -2, 65504, 2 ** -24, Math.fround(0.333251953125), Infinity, -Infinity, 0]);
    expect(float16ToFloat32(0x7e00)).toBeNaN();
    expect(float16ToFloat32(0x8000)).toBe(-0);
  });

  it('decodes bfloat16 bit patterns', () => {
    const b: TensorData = { dtype: 'bfloat16', shape: [2, 2], data: Uint16Array.from([0x3f80, 0x4049, 0xbf80, 0x7f80]) };
    expect(Array.from(toFloat32(b))).toEqual([1, 3.140625, -1, Infinity]);
    expect(bfloat16ToFloat32(0x0000)).toBe(0);
  });

  it('converts float64, int64, int32, int16, int8, uint8 and bool', () => {
    expect(Array.from(toFloat32({ dtype: 'float64', shape: [2], data: Float64Array.from([0.1, -1e300]) }))).toEqual([Math.fround(0.1), -Infinity]);
    expect(Array.from(toFloat32({ dtype: 'int64', shape: [3], data: BigInt64Array.from([0n, -5n, 2196n]) }))).toEqual([0, -5, 2196]);
    expect(Array.from(toFloat32({ dtype: 'int32', shape: [1], data: Int32Array.from([-7]) }))).toEqual([-7]);
    expect(Array.from(toFloat32({ dtype: 'int16', shape: [1], data: Int16Array.from([-300]) }))).toEqual([-300]);
    expect(Array.from(toFloat32({ dtype: 'int8', shape: [1], data: Int8Array.from([-128]) }))).toEqual([-128]);
    expect(Array.from(toFloat32({ dtype: 'uint8', shape: [1], data: Uint8Array.from([255]) }))).toEqual([255]);
    expect(Array.from(toFloat32({ dtype: 'bool', shape: [2], data: Uint8Array.from([1, 0]) }))).toEqual([1, 0]);
  });

  it('returns a float32 tensor its own array', () => {
    const t = f32([1, 2]);
    expect(toFloat32(t)).toBe(t.data);
  });

  it('float32 → float16 / bfloat16 round to nearest even and invert the decoders', () => {
    expect(float32ToFloat16(1)).toBe(0x3c00);
    expect(float32ToFloat16(65504)).toBe(0x7bff);
    expect(float32ToFloat16(65520)).toBe(0x7c00); // rounds up to inf
    expect(float32ToFloat16(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16(2 ** -26)).toBe(0x0000); // below half the smallest subnormal
    expect(float32ToFloat16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(float32ToFloat16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(float32ToBfloat16(1)).toBe(0x3f80);
    expect(float32ToBfloat16(3.140625)).toBe(0x4049);
    for (let h = 0; h < 0x7c00; h += 7) expect(float32ToFloat16(float16ToFloat32(h))).toBe(h);
    for (let b = 0; b < 0x7f80; b += 13) expect(float32ToBfloat16(bfloat16ToFloat32(b))).toBe(b);
  });
});

describe('makeTensor and gatherStrided', () => {
  it('makeTensor checks array type and length', () => {
    expect(makeTensor('int64', [2], BigInt64Array.from([1n, 2n])).shape).toEqual([2]);
    expect(() => makeTensor('float32', [2, 2], new Float32Array(3))).toThrow('shape (2, 2) needs 4 elements, got 3');
    expect(() => makeTensor('int64', [1], new Float32Array(1))).toThrow('dtype int64 needs a BigInt64Array, got Float32Array');
  });

  it('copies contiguous and strided views into C order', () => {
    const storage = Float32Array.from({ length: 24 }, (_, i) => i);
    expect(Array.from(gatherStrided(storage, 4, [2, 3], [3, 1]) as Float32Array)).toEqual([4, 5, 6, 7, 8, 9]);
    // a transposed view: t[i][j] = storage[1 + i + 2j]
    expect(Array.from(gatherStrided(storage, 1, [2, 3], [1, 2]) as Float32Array)).toEqual([1, 3, 5, 2, 4, 6]);
    // (2,3,4) permuted to (4,2,3): t[a][b][c] = s[b*12 + c*4 + a]
    const p = gatherStrided(storage, 0, [4, 2, 3], [1, 12, 4]);
    expect(p[0 * 6 + 1 * 3 + 2]).toBe(1 * 12 + 2 * 4 + 0);
    expect(p[3 * 6 + 0 * 3 + 1]).toBe(0 * 12 + 1 * 4 + 3);
    // a broadcast (stride 0) view
    expect(Array.from(gatherStrided(storage, 5, [3, 2], [0, 1]) as Float32Array)).toEqual([5, 6, 5, 6, 5, 6]);
    expect(gatherStrided(storage, 0, [0, 3], [3, 1]).length).toBe(0);
    expect(() => gatherStrided(storage, 20, [2, 3], [3, 1])).toThrow('reaches element 25 of a storage of 24');
  });
});

describe('normalizeStateDict', () => {
  const t = f32([1]);

  it('keeps a bare state dict unchanged and says nothing', () => {
    const { dict, notes } = normalizeStateDict(new Map([['swinViT.a', t], ['encoder1.b', t]]));
    expect([...dict.keys()]).toEqual(['swinViT.a', 'encoder1.b']);
    expect(notes).toEqual([]);
  });

  it('v1: unwraps state_dict, strips module., renames swin_vit, skips non-tensors', () => {
    const raw = new Map<unknown, unknown>([
      ['epoch', 10],
      ['state_dict', new Map<unknown, unknown>([['module.swin_vit.patch_embed.proj.weight', t], ['module.encoder1.x', t], ['step', 3]])],
    ]);
    const { dict, notes } = normalizeStateDict(raw);
    expect([...dict.keys()]).toEqual(['swinViT.patch_embed.proj.weight', 'encoder1.x']);
    expect(notes).toEqual([
      'unwrapped "state_dict"; ignored top-level entries: epoch',
      'skipped 1 non-tensor entry: step',
      'stripped prefix "module." on 2 keys',
      'renamed "swin_vit" → "swinViT" on 1 key',
    ]);
  });

  it('v2: unwraps network_weights / net / student / model and strips module.backbone.', () => {
    for (const w of ['network_weights', 'net', 'student', 'model']) {
      const raw = { [w]: { 'module.backbone.swinViT.a': t, 'backbone.encoder10.b': t }, teacher: { x: t } };
      const { dict, notes } = normalizeStateDict(raw);
      expect([...dict.keys()]).toEqual(['swinViT.a', 'encoder10.b']);
      expect(notes[0]).toBe(`unwrapped "${w}"; ignored top-level entries: teacher`);
      expect(notes).toContain('stripped prefix "backbone." on 2 keys');
      expect(notes).toContain('stripped prefix "module." on 1 key');
    }
  });

  it('unwraps nested wrappers', () => {
    const { dict, notes } = normalizeStateDict({ model: { state_dict: { 'module.a': t } } });
    expect([...dict.keys()]).toEqual(['a']);
    expect(notes.slice(0, 2)).toEqual(['unwrapped "model"', 'unwrapped "state_dict" (at model)']);
  });

  it('select keeps one sub-tree of a v1 VoCoHead checkpoint', () => {
    const raw = new Map([
      ['student.swinViT.a', t],
      ['student.proj_head.layer1.0.weight', t],
      ['teacher.swinViT.a', t],
    ]);
    const { dict, notes } = normalizeStateDict(raw, { select: 'student.' });
    expect([...dict.keys()]).toEqual(['swinViT.a', 'proj_head.layer1.0.weight']);
    expect(notes).toEqual(['selected 2 keys under "student.", dropped 1']);
    expect(() => normalizeStateDict(raw, { select: 'ema.' })).toThrow('no keys start with "ema."');
  });

  it('reports keys that collide after renaming and keeps the later one', () => {
    const a = f32([1]);
    const b = f32([2]);
    const { dict, notes } = normalizeStateDict(new Map([['module.w', a], ['w', b]]));
    expect(dict.get('w')).toBe(b);
    expect(notes[0]).toBe('keys "module.w" and "w" both become "w"; kept the later one');
  });

  it('throws a clear error when there are no tensors', () => {
    expect(() => normalizeStateDict({ epoch: 3, best_acc: 0.8 })).toThrow('no tensors found; its keys are "epoch", "best_acc"');
    expect(() => normalizeStateDict({ state_dict: { step: 1 } })).toThrow('no tensors found under state_dict');
    expect(() => normalizeStateDict([1, 2])).toThrow('expected a dict of tensors (a state dict), got a sequence of 2');
  });
});
