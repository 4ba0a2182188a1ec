/**
 * In-memory tensors and state dicts, independent of any framework.
 *
 * A `TensorData` is a dense tensor in C (row-major) order with a PyTorch-style dtype. Float16 and
 * bfloat16 are kept as their raw 16-bit patterns (`Uint16Array`); int64 as `BigInt64Array`; bool as
 * `Uint8Array` (0/1). Data is always in host byte order.
 */

export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export type TensorArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

export interface TensorData {
  dtype: DType;
  shape: number[];
  data: TensorArray;
}

/** Ordered name → tensor map (insertion order is the file's order). */
export type StateDict = Map<string, TensorData>;

type TypedArrayCtor = {
  new (length: number): TensorArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorArray;
  readonly BYTES_PER_ELEMENT: number;
};

export const DTYPES: Readonly<Record<DType, { bytes: number; ctor: TypedArrayCtor; floating: boolean }>> = {
  float32: { bytes: 4, ctor: Float32Array as unknown as TypedArrayCtor, floating: true },
  float64: { bytes: 8, ctor: Float64Array as unknown as TypedArrayCtor, floating: true },
  float16: { bytes: 2, ctor: Uint16Array as unknown as TypedArrayCtor, floating: true },
  bfloat16: { bytes: 2, ctor: Uint16Array as unknown as TypedArrayCtor, floating: true },
  int64: { bytes: 8, ctor: BigInt64Array as unknown as TypedArrayCtor, floating: false },
  int32: { bytes: 4, ctor: Int32Array as unknown as TypedArrayCtor, floating: false },
  int16: { bytes: 2, ctor: Int16Array as unknown as TypedArrayCtor, floating: false },
  int8: { bytes: 1, ctor: Int8Array as unknown as TypedArrayCtor, floating: false },
  uint8: { bytes: 1, ctor: Uint8Array as unknown as TypedArrayCtor, floating: false },
  bool: { bytes: 1, ctor: Uint8Array as unknown as TypedArrayCtor, floating: false },
};

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, x);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
}

/** A tensor, after checking that `data` has the array type and length the dtype and shape need. */
export function makeTensor(dtype: DType, shape: number[], data: TensorArray): TensorData {
  const info = DTYPES[dtype];
  if (!info) throw new Error(`unknown dtype ${String(dtype)}`);
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`invalid shape ${JSON.stringify(shape)}`);
  }
  if (!(data instanceof (info.ctor as unknown as typeof Float32Array))) {
    throw new Error(`dtype ${dtype} needs a ${info.ctor.name}, got ${data.constructor.name}`);
  }
  if (data.length !== numel(shape)) {
    throw new Error(`shape ${formatShape(shape)} needs ${numel(shape)} elements, got ${data.length}`);
  }
  return { dtype, shape: [...shape], data };
}

export function isTensorData(x: unknown): x is TensorData {
  if (typeof x !== 'object' || x === null) return false;
  const t = x as Partial<TensorData>;
  return isDType(t.dtype) && Array.isArray(t.shape) && ArrayBuffer.isView(t.data);
}

/** Reverses the byte order of each `size`-byte element, in place. */
export function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  if (bytes.length % size !== 0) throw new Error(`byte length ${bytes.length} is not a multiple of ${size}`);
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/**
 * A typed array of `dtype` holding a copy of `bytes`, which are in little-endian order unless
 * `bigEndian`. The result is in host order. Throws if the byte length is not a whole number of elements.
 */
export function typedArrayFromBytes(dtype: DType, bytes: Uint8Array, bigEndian = false): TensorArray {
  const { bytes: size, ctor } = DTYPES[dtype];
  if (bytes.length % size !== 0) {
    throw new Error(`${bytes.length} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  if (bigEndian === HOST_LITTLE_ENDIAN) swapBytes(copy, size);
  return new ctor(copy.buffer, 0, bytes.length / size);
}

/** The bytes of a tensor's data, little-endian (or big-endian), as a fresh copy. */
export function tensorBytes(t: TensorData, bigEndian = false): Uint8Array {
  const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(src.length);
  out.set(src);
  if (bigEndian === HOST_LITTLE_ENDIAN) swapBytes(out, DTYPES[t.dtype].bytes);
  return out;
}

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);

export function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bfloat16ToFloat32(b: number): number {
  u32scratch[0] = (b & 0xffff) << 16;
  return f32scratch[0]!;
}

/** Float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function float32ToBfloat16(x: number): number {
  f32scratch[0] = x;
  const u = u32scratch[0]!;
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Float32 → float16 bits, round to nearest even, overflow to ±inf. */
export function float32ToFloat16(x: number): number {
  f32scratch[0] = x;
  const u = u32scratch[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/**
 * The tensor's values as float32. A float32 tensor's own array is returned (no copy); every other
 * dtype is converted into a new array (int64 through Number, so values beyond 2^53 lose precision).
 */
export function toFloat32(t: TensorData): Float32Array {
  const d = t.data;
  if (t.dtype === 'float32') return d as Float32Array;
  const out = new Float32Array(d.length);
  switch (t.dtype) {
    case 'float16':
      for (let i = 0; i < d.length; i++) out[i] = float16ToFloat32(d[i] as number);
      break;
    case 'bfloat16':
      for (let i = 0; i < d.length; i++) out[i] = bfloat16ToFloat32(d[i] as number);
      break;
    case 'int64':
      for (let i = 0; i < d.length; i++) out[i] = Number(d[i] as bigint);
      break;
    default:
      for (let i = 0; i < d.length; i++) out[i] = d[i] as number;
  }
  return out;
}

/** Row-major strides (in elements) for a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/**
 * Gathers the view (offset, size, stride) of a flat storage into a new C-ordered array. Negative
 * strides are not produced by PyTorch and are rejected; the view must lie inside the storage.
 */
export function gatherStrided(
  storage: TensorArray,
  offset: number,
  size: readonly number[],
  stride: readonly number[],
): TensorArray {
  if (size.length !== stride.length) {
    throw new Error(`size ${formatShape(size)} and stride ${formatShape(stride)} have different ranks`);
  }
  const n = numel(size);
  const ctor = storage.constructor as unknown as TypedArrayCtor;
  if (n === 0) return new ctor(0);
  let last = offset;
  for (let i = 0; i < size.length; i++) {
    if (!Number.isInteger(stride[i]) || stride[i]! < 0) throw new Error(`invalid stride ${formatShape(stride)}`);
    last += (size[i]! - 1) * stride[i]!;
  }
  if (!Number.isInteger(offset) || offset < 0 || last >= storage.length) {
    throw new Error(
      `tensor view (offset ${offset}, size ${formatShape(size)}, stride ${formatShape(stride)}) reaches element ${last} of a storage of ${storage.length}`,
    );
  }
  const cont = contiguousStrides(size);
  if (size.every((s, i) => s === 1 || stride[i] === cont[i])) {
    return storage.slice(offset, offset + n) as TensorArray;
  }
  const out = new ctor(n) as TensorArray & { [i: number]: number | bigint };
  const src = storage as TensorArray & { [i: number]: number | bigint };
  const rank = size.length;
  const idx = new Array<number>(rank).fill(0);
  let pos = offset;
  for (let k = 0; k < n; k++) {
    out[k] = src[pos]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      pos += stride[d]!;
      if (idx[d]! < size[d]!) break;
      pos -= idx[d]! * stride[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

// ----------------------------------------------------------------------------------------------
// Normalisation of what VoCo users load
// ----------------------------------------------------------------------------------------------

/** Wrapper keys whose value is the state dict, in the order they are tried. */
export const WRAPPER_KEYS = ['state_dict', 'network_weights', 'net', 'student', 'model'] as const;
/** Leading key prefixes removed (repeatedly, in any order). */
export const STRIPPED_PREFIXES = ['module.', 'backbone.'] as const;

export interface NormalizeOptions {
  /**
   * Keep only keys starting with this prefix (after unwrapping and prefix stripping) and remove it,
   * e.g. `student.` for a v1 VoCoHead checkpoint. Other keys are dropped (and counted in `notes`).
   */
  select?: string;
}

function entriesOf(x: unknown): Array<[unknown, unknown]> | undefined {
  if (x instanceof Map) return [...x.entries()];
  if (typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x) && !isTensorData(x)) {
    return Object.entries(x);
  }
  return undefined;
}

function countTensors(entries: Array<[unknown, unknown]>): number {
  let n = 0;
  for (const [, v] of entries) if (isTensorData(v)) n++;
  return n;
}

function describeKeys(entries: Array<[unknown, unknown]>): string {
  const ks = entries.map(([k]) => JSON.stringify(String(k)));
  return ks.length > 12 ? `${ks.slice(0, 12).join(', ')}, … (${ks.length} in all)` : ks.join(', ') || '(none)';
}

/**
 * Finds the state dict in what `torch.load` (or another reader) returned and puts its keys in the
 * form MONAI's SwinUNETR uses: unwraps `state_dict` / `network_weights` / `net` / `student` / `model`
 * (repeatedly), removes leading `module.` and `backbone.`, renames `swin_vit` → `swinViT`. Every
 * change is described in `notes`. Throws if no tensors are found.
 */
export function normalizeStateDict(raw: unknown, opts: NormalizeOptions = {}): { dict: StateDict; notes: string[] } {
  const notes: string[] = [];
  const top = entriesOf(raw);
  if (!top) {
    throw new Error(`expected a dict of tensors (a state dict), got ${describeValue(raw)}`);
  }
  let entries: Array<[unknown, unknown]> = top;
  const path: string[] = [];
  for (let depth = 0; depth < 8; depth++) {
    const current: Array<[unknown, unknown]> = entries;
    const wrapper = WRAPPER_KEYS.find((w) => current.some(([k, v]) => k === w && entriesOf(v) !== undefined));
    // A dict that is mostly tensors is the state dict itself, even if it has a key named like a wrapper.
    if (!wrapper || countTensors(current) > current.length / 2) break;
    const inner: Array<[unknown, unknown]> = entriesOf(current.find(([k]) => k === wrapper)![1])!;
    const others = current.filter(([k]) => k !== wrapper).map(([k]) => String(k));
    path.push(wrapper);
    notes.push(
      `unwrapped ${JSON.stringify(wrapper)}${path.length > 1 ? ` (at ${path.slice(0, -1).join('.')})` : ''}` +
        (others.length ? `; ignored top-level entries: ${others.join(', ')}` : ''),
    );
    entries = inner;
  }
  const skipped = entries.filter(([, v]) => !isTensorData(v)).map(([k]) => String(k));
  const tensors = entries.filter(([, v]) => isTensorData(v)) as Array<[unknown, TensorData]>;
  if (tensors.length === 0) {
    throw new Error(`no tensors found${path.length ? ` under ${path.join('.')}` : ''}; its keys are ${describeKeys(entries)}`);
  }
  if (skipped.length) notes.push(`skipped ${skipped.length} non-tensor entr${skipped.length === 1 ? 'y' : 'ies'}: ${skipped.join(', ')}`);

  const counts = new Map<string, number>();
  const bump = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);
  const dict: StateDict = new Map();
  const origin = new Map<string, string>();
  let dropped = 0;
  for (const [k0, t] of tensors) {
    const orig = String(k0);
    let k = orig;
    for (let again = true; again; ) {
      again = false;
      for (const p of STRIPPED_PREFIXES) {
        if (k.startsWith(p)) {
          k = k.slice(p.length);
          bump(`stripped prefix ${JSON.stringify(p)}`);
          again = true;
        }
      }
    }
    if (k.includes('swin_vit')) {
      k = k.replaceAll('swin_vit', 'swinViT');
      bump('renamed "swin_vit" → "swinViT"');
    }
    if (opts.select !== undefined) {
      if (!k.startsWith(opts.select)) {
        dropped++;
        continue;
      }
      k = k.slice(opts.select.length);
    }
    const prev = origin.get(k);
    if (prev !== undefined) {
      notes.push(`keys ${JSON.stringify(prev)} and ${JSON.stringify(orig)} both become ${JSON.stringify(k)}; kept the later one`);
      dict.delete(k);
    }
    origin.set(k, orig);
    dict.set(k, t);
  }
  for (const [what, n] of counts) notes.push(`${what} on ${n} key${n === 1 ? '' : 's'}`);
  if (opts.select !== undefined) {
    notes.push(`selected ${dict.size} key${dict.size === 1 ? '' : 's'} under ${JSON.stringify(opts.select)}, dropped ${dropped}`);
    if (dict.size === 0) throw new Error(`no keys start with ${JSON.stringify(opts.select)}`);
  }
  return { dict, notes };
}

export function describeValue(x: unknown): string {
  if (x === null) return 'None';
  if (x === undefined) return 'nothing';
  if (isTensorData(x)) return `a tensor ${formatShape(x.shape)} ${x.dtype}`;
  if (Array.isArray(x)) return `a sequence of ${x.length}`;
  if (x instanceof Map) return `a dict of ${x.size}`;
  if (typeof x === 'object') return `an object (${x.constructor?.name ?? 'Object'})`;
  return `a ${typeof x} (${String(x).slice(0, 40)})`;
}
