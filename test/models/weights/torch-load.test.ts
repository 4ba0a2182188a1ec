import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { zipSync } from 'fflate';
import { readTorchCheckpoint, torchCheckpointFromBytes, TorchLoadError, type TorchCheckpoint } from '../../../src/models/weights/torch-load.ts';
import { float32ToFloat16, toFloat32 } from '../../../src/models/weights/state-dict.ts';
import { leBytes, PickleWriter, pickleTensorDict, torchZip } from './pickle-builder.ts';
import { tempDir } from '../../helpers.ts';
import { FIXTURES, FS12_PT, fs12Keys, HEAD_PT, readF32, type KeyInfo } from './fixtures.ts';

const FS12_KEYS = fs12Keys();

function stats(x: ArrayLike<number>) {
  let s = 0;
  let s2 = 0;
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    s += x[i]!;
    s2 += x[i]! * x[i]!;
    max = Math.max(max, Math.abs(x[i]!));
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / x.length - mean * mean)), maxAbs: max };
}

/** PyTorch's default (kaiming-uniform a=√5) bound for Linear/Conv weights and biases: 1/√fan_in. */
function initBound(weightShape: number[]): number {
  return 1 / Math.sqrt(weightShape[1]! * weightShape.slice(2).reduce((a, b) => a * b, 1));
}

describe('readTorchCheckpoint on the MONAI SwinUNETR fixture', () => {
  let ck: TorchCheckpoint;
  beforeAll(async () => {
    ck = await readTorchCheckpoint(FS12_PT);
  });

  it('reads all 167 keys in order with the shapes and dtypes torch reported', () => {
    expect(FS12_KEYS.num_keys).toBe(167);
    expect([...ck.dict.keys()]).toEqual(FS12_KEYS.keys.map((k) => k.key));
    for (const k of FS12_KEYS.keys) {
      const t = ck.dict.get(k.key)!;
      expect({ key: k.key, shape: t.shape, dtype: t.dtype, numel: t.data.length }).toEqual({ key: k.key, shape: k.shape, dtype: k.dtype, numel: k.numel });
    }
    const floats = [...ck.dict.values()].filter((t) => t.dtype === 'float32');
    expect(floats.length).toBe(159);
    expect(floats.reduce((a, t) => a + t.data.length, 0)).toBe(FS12_KEYS.num_params_float);
    expect(ck.dict.get('swinViT.layers1.0.blocks.0.attn.relative_position_index')!.data).toBeInstanceOf(BigInt64Array);
    // a bare OrderedDict: nothing to unwrap or rename
    expect(ck.notes).toEqual(['torch zip format, version 3, root "swinunetr_fs12"', '167 storage records']);
    expect(ck.raw).toBeInstanceOf(Map);
  });

  it('relative_position_index buffers are exactly the 7×7×7 window index table', () => {
    // index(i, j) = (d_i − d_j + 6)·13² + (h_i − h_j + 6)·13 + (w_i − w_j + 6), positions in (d, h, w) C order
    const expected = new BigInt64Array(343 * 343);
    for (let i = 0; i < 343; i++) {
      for (let j = 0; j < 343; j++) {
        const d = Math.floor(i / 49) - Math.floor(j / 49);
        const h = (Math.floor(i / 7) % 7) - (Math.floor(j / 7) % 7);
        const w = (i % 7) - (j % 7);
        expected[i * 343 + j] = BigInt((d + 6) * 169 + (h + 6) * 13 + (w + 6));
      }
    }
    const keys = [...ck.dict.keys()].filter((k) => k.endsWith('relative_position_index'));
    expect(keys.length).toBe(8);
    for (const k of keys) {
      const t = ck.dict.get(k)!;
      expect(t.dtype).toBe('int64');
      expect(t.shape).toEqual([343, 343]);
      const data = t.data as BigInt64Array;
      let sum = 0n;
      let min = data[0]!;
      let max = data[0]!;
      for (const v of data) {
        sum += v;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      expect([min, max]).toEqual([0n, 2196n]);
      expect(sum).toBe(117649n * 1098n); // symmetric around the centre index 1098
      expect(data[0]).toBe(1098n); // position 0 with itself
      expect(data[342]).toBe(0n); // (0,0,0) − (6,6,6)
      expect(data[342 * 343]).toBe(2196n); // (6,6,6) − (0,0,0)
      expect(Buffer.from(data.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    }
  });

  it('float tensors have the statistics of PyTorch/MONAI default initialisation', () => {
    for (const [k, t] of ck.dict) {
      if (t.dtype !== 'float32') continue;
      const x = t.data as Float32Array;
      expect(x.every(Number.isFinite), k).toBe(true);
      const s = stats(x);
      if (/norm\d?\.weight$/.test(k)) {
        expect(x.every((v) => v === 1), k).toBe(true); // LayerNorm weight = 1
      } else if (/norm\d?\.bias$/.test(k)) {
        expect(x.every((v) => v === 0), k).toBe(true); // LayerNorm bias = 0
      } else if (k.endsWith('relative_position_bias_table')) {
        // trunc_normal_(std=0.02)
        expect(s.std, k).toBeGreaterThan(0.018);
        expect(s.std, k).toBeLessThan(0.022);
        expect(Math.abs(s.mean), k).toBeLessThan(0.002);
      } else if (k.endsWith('.weight')) {
        // U(−b, b), b = 1/√fan_in; for ConvTranspose3d (in, out, k…) fan_in is out·k³ (dim 1)
        const b = initBound(t.shape);
        expect(s.maxAbs, k).toBeLessThanOrEqual(b);
        if (x.length >= 500) {
          expect(s.maxAbs, k).toBeGreaterThan(0.97 * b);
          expect(s.std / (b / Math.sqrt(3)), k).toBeGreaterThan(0.9);
          expect(s.std / (b / Math.sqrt(3)), k).toBeLessThan(1.1);
        }
      } else if (k.endsWith('.bias')) {
        const w = ck.dict.get(k.replace(/bias$/, 'weight'))!;
        expect(s.maxAbs, k).toBeLessThanOrEqual(initBound(w.shape));
        expect(s.std, k).toBeGreaterThan(0);
      } else throw new Error(`unclassified key ${k}`);
    }
    // the fan-in rule above only holds for the transposed convs if dim 1 really is `out`
    const tc = ck.dict.get('decoder5.transp_conv.conv.weight')!;
    expect(tc.shape).toEqual([192, 96, 2, 2, 2]);
    expect(stats(tc.data as Float32Array).maxAbs).toBeGreaterThan(1 / Math.sqrt(192 * 8));
  });

  it('patch-embedding weights reproduce MONAI’s patch_embed output on the fixture input', () => {
    // patch_embed = Conv3d(1, 12, kernel 2, stride 2); output[c, p, q, r] = b[c] + Σ W[c,0,a,b,d]·x[2p+a, 2q+b, 2r+d]
    const x = readF32('in64/input').data; // (1,1,64,64,64)
    const ref = readF32('in64/modules/swinViT_patch_embed_sub4'); // (1,12,8,8,8) = full[:, :, ::4, ::4, ::4]
    const W = ck.dict.get('swinViT.patch_embed.proj.weight')!.data as Float32Array;
    const B = ck.dict.get('swinViT.patch_embed.proj.bias')!.data as Float32Array;
    let maxErr = 0;
    for (let c = 0; c < 12; c++) {
      for (let i = 0; i < 8; i++) {
        for (let j = 0; j < 8; j++) {
          for (let k = 0; k < 8; k++) {
            let acc = B[c]!;
            for (let a = 0; a < 2; a++) {
              for (let b = 0; b < 2; b++) {
                for (let d = 0; d < 2; d++) {
                  acc += W[c * 8 + a * 4 + b * 2 + d]! * x[(8 * i + a) * 4096 + (8 * j + b) * 64 + (8 * k + d)]!;
                }
              }
            }
            maxErr = Math.max(maxErr, Math.abs(acc - ref.data[c * 512 + i * 64 + j * 8 + k]!));
          }
        }
      }
    }
    expect(maxErr).toBeLessThan(1e-5);
  });

  it('reads a path and the same bytes identically', () => {
    const again = torchCheckpointFromBytes(new Uint8Array(readFileSync(FS12_PT)), 'x.pt');
    for (const [k, t] of ck.dict) {
      const u = again.dict.get(k)!;
      expect(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
    }
  });
});

describe('readTorchCheckpoint on the VoCo projection-head fixture (a plain dict)', () => {
  it('reads the head and its weights reproduce the reference projection', async () => {
    const ck = await readTorchCheckpoint(HEAD_PT);
    const ref = JSON.parse(readFileSync(join(FIXTURES, 'voco', 'voco_reference.json'), 'utf8')) as { head: { keys: KeyInfo[] } };
    expect([...ck.dict.keys()]).toEqual(ref.head.keys.map((k) => k.key));
    for (const k of ref.head.keys) {
      expect(ck.dict.get(k.key)!.shape).toEqual(k.shape);
      expect(ck.dict.get(k.key)!.dtype).toBe(k.dtype);
    }
    expect(ck.notes).toEqual(['torch zip format, version 3, root "voco_proj_head_fs12"', '6 storage records']);

    // layer1/2 = Linear → BatchNorm1d(affine=False, batch statistics, eps 1e-5) → ReLU; layer3 = Linear
    const pooled = readF32('voco/pooled'); // (3, 288)
    const proj = readF32('voco/proj'); // (3, 128)
    let h: number[][] = [0, 1, 2].map((b) => Array.from(pooled.data.subarray(b * 288, (b + 1) * 288)));
    const linear = (x: number[][], name: string) => {
      const w = ck.dict.get(`proj_head.${name}.0.weight`)!;
      const W = w.data as Float32Array;
      const B = ck.dict.get(`proj_head.${name}.0.bias`)!.data as Float32Array;
      const [out, inn] = w.shape as [number, number];
      return x.map((row) => Array.from({ length: out }, (_, o) => row.reduce((a, v, i) => a + v * W[o * inn + i]!, B[o]!)));
    };
    const bnRelu = (x: number[][]) => {
      const n = x.length;
      const C = x[0]!.length;
      const out = x.map((r) => [...r]);
      for (let c = 0; c < C; c++) {
        const m = x.reduce((a, r) => a + r[c]!, 0) / n;
        const v = x.reduce((a, r) => a + (r[c]! - m) ** 2, 0) / n;
        for (let b = 0; b < n; b++) out[b]![c] = Math.max(0, (x[b]![c]! - m) / Math.sqrt(v + 1e-5));
      }
      return out;
    };
    h = bnRelu(linear(h, 'layer1'));
    h = bnRelu(linear(h, 'layer2'));
    h = linear(h, 'layer3');
    let maxErr = 0;
    for (let b = 0; b < 3; b++) for (let o = 0; o < 128; o++) maxErr = Math.max(maxErr, Math.abs(h[b]![o]! - proj.data[b * 128 + o]!));
    expect(maxErr).toBeLessThan(1e-4);
  });
});

describe('torch zip archives built by hand', () => {
  const storage = Float32Array.from({ length: 12 }, (_, i) => i + 0.5);

  it('rebuilds contiguous, offset, non-contiguous and shared-storage tensors', () => {
    const pkl = pickleTensorDict(
      [
        ['full', { storageClass: 'FloatStorage', key: '0', numel: 12, size: [3, 4] }],
        ['offset', { storageClass: 'FloatStorage', key: '0', numel: 12, offset: 6, size: [2, 3] }],
        // the transpose of `full`: t[i][j] = s[i + 4j]
        ['transposed', { storageClass: 'FloatStorage', key: '0', numel: 12, size: [4, 3], stride: [1, 4] }],
        // every other column of rows 1..2: t[i][j] = s[4 + 4i + 2j]
        ['strided', { storageClass: 'FloatStorage', key: '0', numel: 12, offset: 4, size: [2, 2], stride: [4, 2] }],
        ['scalar', { storageClass: 'FloatStorage', key: '0', numel: 12, offset: 11, size: [], stride: [] }],
        ['ids', { storageClass: 'LongStorage', key: '1', numel: 3, size: [3] }],
      ],
      { ordered: true },
    );
    const zip = torchZip({ pickle: pkl, storages: { '0': leBytes(storage), '1': leBytes(BigInt64Array.from([-1n, 2n ** 40n, 7n])) } });
    const { dict } = torchCheckpointFromBytes(zip);
    const vals = (k: string) => Array.from(dict.get(k)!.data as Float32Array);
    expect(vals('full')).toEqual(Array.from(storage));
    expect(dict.get('transposed')!.shape).toEqual([4, 3]);
    expect(vals('offset')).toEqual([6.5, 7.5, 8.5, 9.5, 10.5, 11.5]);
    expect(vals('transposed')).toEqual([0.5, 4.5, 8.5, 1.5, 5.5, 9.5, 2.5, 6.5, 10.5, 3.5, 7.5, 11.5]);
    expect(vals('strided')).toEqual([4.5, 6.5, 8.5, 10.5]);
    expect(dict.get('scalar')).toEqual({ dtype: 'float32', shape: [], data: Float32Array.from([11.5]) });
    expect(Array.from(dict.get('ids')!.data as BigInt64Array)).toEqual([-1n, 2n ** 40n, 7n]);
    // views never alias each other or the storage
    (dict.get('full')!.data as Float32Array)[6] = -1;
    expect(vals('offset')[0]).toBe(6.5);
  });

  it('reads big-endian archives (byteorder = big)', () => {
    const f32 = Float32Array.from([1.5, -2.25, 3e-8]);
    const f64 = Float64Array.from([Math.PI, -1e300]);
    const i64 = BigInt64Array.from([-2n, 2196n]);
    const i32 = Int32Array.from([-70000, 5]);
    const f16 = Uint16Array.from([float32ToFloat16(0.5), float32ToFloat16(-3)]);
    const pkl = pickleTensorDict([
      ['f32', { storageClass: 'FloatStorage', key: 'a', numel: 3, size: [3] }],
      ['f64', { storageClass: 'DoubleStorage', key: 'b', numel: 2, size: [2] }],
      ['i64', { storageClass: 'LongStorage', key: 'c', numel: 2, size: [2, 1] }],
      ['i32', { storageClass: 'IntStorage', key: 'd', numel: 2, size: [2] }],
      ['f16', { storageClass: 'HalfStorage', key: 'e', numel: 2, size: [1, 2] }],
    ]);
    const storages = { a: leBytes(f32, true), b: leBytes(f64, true), c: leBytes(i64, true), d: leBytes(i32, true), e: leBytes(f16, true) };
    const { dict, notes } = torchCheckpointFromBytes(torchZip({ pickle: pkl, storages, byteorder: 'big' }));
    expect(notes).toContain('byteorder big');
    expect(dict.get('f32')!.data).toEqual(f32);
    expect(dict.get('f64')!.data).toEqual(f64);
    expect(dict.get('i64')!.data).toEqual(i64);
    expect(dict.get('i32')!.data).toEqual(i32);
    expect(Array.from(toFloat32(dict.get('f16')!))).toEqual([0.5, -3]);
    // the same storages read as little-endian give different numbers: the flag is honoured
    const le = torchCheckpointFromBytes(torchZip({ pickle: pkl, storages, byteorder: 'little' }));
    expect(le.dict.get('f64')!.data).not.toEqual(f64);
  });

  it('reads bf16, bool, uint8 storages, _rebuild_parameter, _rebuild_from_type_v2 and _rebuild_tensor_v3 on an untyped storage', () => {
    const w = new PickleWriter().proto(2).emptyDict().mark();
    w.str('param').global('torch._utils', '_rebuild_parameter');
    w.tensor({ storageClass: 'BFloat16Storage', key: '0', numel: 2, offset: 0, size: [2], stride: [1] });
    w.bool(true).global('collections', 'OrderedDict').emptyTuple().reduce().tuple3().reduce();
    w.str('mask').tensor({ storageClass: 'BoolStorage', key: '1', numel: 3, offset: 0, size: [3], stride: [1] });
    w.str('bytes').tensor({ storageClass: 'ByteStorage', key: '2', numel: 2, offset: 1, size: [1], stride: [1] });
    // v3: (untyped storage of 8 bytes, offset 1, size (3,), stride (1,), False, OrderedDict(), torch.float16)
    w.str('v3').global('torch._utils', '_rebuild_tensor_v3').mark();
    w.mark().str('storage').global('torch', 'UntypedStorage').str('3').str('cpu').int(8).tuple().binpersid();
    w.int(1).ints([3]).ints([1]).bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().global('torch', 'float16');
    w.tuple().reduce();
    // a tensor subclass: _rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, (args…), {})
    w.str('sub').global('torch._tensor', '_rebuild_from_type_v2').mark().global('torch._utils', '_rebuild_tensor_v2').global('torch', 'Tensor');
    w.mark().mark().str('storage').global('torch', 'ByteStorage').str('2').str('cpu').int(2).tuple().binpersid();
    w.int(0).ints([2]).ints([1]).bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple();
    w.emptyDict().tuple().reduce();
    w.setitems();
    const h = Uint16Array.from([0, 0x3c00, 0x4000, 0xc400]);
    const zip = torchZip({
      pickle: w.stop().bytes(),
      storages: { '0': leBytes(Uint16Array.from([0x3f80, 0xc040])), '1': Uint8Array.from([1, 0, 1]), '2': Uint8Array.from([9, 200]), '3': leBytes(h) },
    });
    const { dict } = torchCheckpointFromBytes(zip);
    expect(dict.get('param')!.dtype).toBe('bfloat16');
    expect(Array.from(toFloat32(dict.get('param')!))).toEqual([1, -3]);
    expect(dict.get('mask')).toEqual({ dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) });
    expect(dict.get('bytes')).toEqual({ dtype: 'uint8', shape: [1], data: Uint8Array.from([200]) });
    expect(dict.get('sub')).toEqual({ dtype: 'uint8', shape: [2], data: Uint8Array.from([9, 200]) });
    expect(dict.get('v3')!.dtype).toBe('float16');
    expect(Array.from(toFloat32(dict.get('v3')!))).toEqual([1, 2, -4]);
  });

  it('unwraps a wrapped, DataParallel checkpoint and keeps the raw object', () => {
    const pkl = pickleTensorDict([['module.swin_vit.patch_embed.proj.bias', { storageClass: 'FloatStorage', key: '0', numel: 2, size: [2] }]], { wrapper: 'state_dict' });
    const ck = torchCheckpointFromBytes(torchZip({ pickle: pkl, storages: { '0': leBytes(Float32Array.from([1, 2])) } }));
    expect([...ck.dict.keys()]).toEqual(['swinViT.patch_embed.proj.bias']);
    expect(ck.notes).toContain('unwrapped "state_dict"; ignored top-level entries: epoch');
    expect(ck.notes).toContain('stripped prefix "module." on 1 key');
    expect((ck.raw as Map<string, unknown>).get('epoch')).toBe(7);
  });
});

describe('readTorchCheckpoint errors', () => {
  const dir = tempDir('voco-weights-');
  const write = (name: string, bytes: Uint8Array | string) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const fails = async (p: string) => {
    try {
      await readTorchCheckpoint(p);
    } catch (e) {
      expect(e).toBeInstanceOf(TorchLoadError);
      return (e as Error).message;
    }
    throw new Error('expected an error');
  };

  it('a file that is not a zip', async () => {
    const p = write('notes.pt', 'these are not weights\n');
    expect(await fails(p)).toBe(`${p}: not a torch.save checkpoint: not a zip archive (it starts with bytes 74 68 65 73)`);
    const e = write('empty.pt', '');
    expect(await fails(e)).toBe(`${e}: not a torch.save checkpoint: not a zip archive (the file is empty)`);
  });

  it('the legacy (pre-zip) torch format', async () => {
    const legacy = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
    const msg = await fails(write('old.pth', legacy));
    expect(msg).toContain('legacy (non-zip) torch.save format written by torch < 1.6');
    expect(msg).toContain('re-save it with a newer torch');
  });

  it('other formats that are not torch.save checkpoints', async () => {
    // legacy format written with pickle protocol 4 (PROTO 4, FRAME, then the magic number)
    const legacy4 = Uint8Array.from([0x80, 0x04, 0x95, 12, 0, 0, 0, 0, 0, 0, 0, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
    expect(await fails(write('old4.pt', legacy4))).toContain('legacy (non-zip) torch.save format');
    const pkl = write('obj.pkl', new PickleWriter().proto(4).emptyDict().stop().bytes());
    expect(await fails(pkl)).toBe(`${pkl}: this is a bare pickle, not a torch.save checkpoint (torch.save writes a zip archive)`);
    const hdr = new TextEncoder().encode('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}');
    const st = new Uint8Array(8 + hdr.length + 4);
    st[0] = hdr.length;
    st.set(hdr, 8);
    const stp = write('w.pt', st);
    expect(await fails(stp)).toBe(`${stp}: this is a safetensors file, not a torch.save checkpoint; read it with readSafetensors`);
    const ts = write('scripted.pt', zipSync({ 'm/data.pkl': new Uint8Array(1), 'm/constants.pkl': new Uint8Array(1), 'm/code/__torch__/m.py': new Uint8Array(1) }));
    expect(await fails(ts)).toContain('this is a TorchScript archive (torch.jit.save)');
    expect(await fails(join(dir, 'nowhere.pt'))).toBe(`${join(dir, 'nowhere.pt')}: no such file`);
  });

  it('a truncated zip', async () => {
    const full = readFileSync(HEAD_PT);
    const p = write('cut.pt', full.subarray(0, Math.floor(full.length / 2)));
    expect(await fails(p)).toBe(`${p}: the zip archive is truncated or corrupt (invalid zip data); the file is ${Math.floor(full.length / 2)} bytes`);
  });

  it('a zip without data.pkl', async () => {
    const p = write('other.zip', zipSync({ 'model/readme.txt': new TextEncoder().encode('hi') }));
    expect(await fails(p)).toBe(`${p}: no data.pkl in the zip archive, so it is not a torch.save checkpoint (entries: model/readme.txt)`);
  });

  it('a truncated or missing storage', async () => {
    const pkl = pickleTensorDict([['w', { storageClass: 'FloatStorage', key: '0', numel: 4, size: [4] }]]);
    const p = write('short.pt', torchZip({ pickle: pkl, storages: { '0': new Uint8Array(10) } }));
    expect(await fails(p)).toBe(`${p}: storage "archive/data/0" is truncated: 4 float32 elements need 16 bytes, the archive holds 10`);
    const q = write('missing.pt', torchZip({ pickle: pkl, storages: {} }));
    expect(await fails(q)).toBe(`${q}: storage "archive/data/0" is missing from the archive`);
  });

  it('a view outside its storage', async () => {
    const pkl = pickleTensorDict([['w', { storageClass: 'FloatStorage', key: '0', numel: 4, offset: 2, size: [4] }]]);
    const p = write('view.pt', torchZip({ pickle: pkl, storages: { '0': new Uint8Array(16) } }));
    expect(await fails(p)).toContain('storage 0: tensor view (offset 2, size (4,), stride (1,)) reaches element 5 of a storage of 4');
  });

  it('a checkpoint whose pickle names a forbidden global', async () => {
    const pkl = new PickleWriter().proto(2).global('os', 'system').str('touch /tmp/pwned').tuple1().reduce().stop().bytes();
    const p = write('evil.pt', torchZip({ pickle: pkl, storages: {} }));
    expect(await fails(p)).toContain('refusing to load global os.system');
  });

  it('a checkpoint with no tensors', async () => {
    const pkl = new PickleWriter().proto(2).emptyDict().str('epoch').int(3).setitem().stop().bytes();
    const p = write('epoch.pt', torchZip({ pickle: pkl, storages: {} }));
    expect(await fails(p)).toBe(`${p}: no tensors found; its keys are "epoch"`);
  });
});

