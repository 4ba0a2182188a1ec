/**
 * Test helper: writes pickles opcode by opcode (from the pickle protocol's opcode table) and wraps
 * them in torch.save-style zip archives, so tests can build exactly the inputs they need.
 */
import { zipSync } from 'fflate';

export class PickleWriter {
  private out: number[] = [];

  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  private u32(n: number): number[] {
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  }
  private u64(n: number): number[] {
    return [...this.u32(n), ...this.u32(Math.floor(n / 2 ** 32))];
  }
  private text(s: string): number[] {
    return [...new TextEncoder().encode(s)];
  }

  proto(p: number) {
    return this.raw(0x80, p);
  }
  frame(n: number) {
    return this.raw(0x95, ...this.u64(n));
  }
  stop() {
    return this.raw(0x2e);
  }
  mark() {
    return this.raw(0x28);
  }
  global(module: string, name: string) {
    return this.raw(0x63, ...this.text(`${module}\n${name}\n`));
  }
  stackGlobal(module: string, name: string) {
    return this.shortStr(module).shortStr(name).raw(0x93);
  }
  inst(module: string, name: string) {
    return this.raw(0x69, ...this.text(`${module}\n${name}\n`));
  }
  /** BINUNICODE */
  str(s: string) {
    const b = this.text(s);
    return this.raw(0x58, ...this.u32(b.length), ...b);
  }
  shortStr(s: string) {
    const b = this.text(s);
    return this.raw(0x8c, b.length, ...b);
  }
  str8(s: string) {
    const b = this.text(s);
    return this.raw(0x8d, ...this.u64(b.length), ...b);
  }
  shortBytes(b: ArrayLike<number>) {
    return this.raw(0x43, b.length, ...Array.from(b));
  }
  binBytes(b: ArrayLike<number>) {
    return this.raw(0x42, ...this.u32(b.length), ...Array.from(b));
  }
  /** BININT1 / BININT2 / BININT / LONG1, whichever fits. */
  int(n: number | bigint) {
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 256) return this.raw(0x4b, n);
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    if (typeof n === 'number' && Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31) return this.raw(0x4a, ...this.u32(n >>> 0));
    let v = BigInt(n);
    const bytes: number[] = [];
    // two's complement, little-endian, minimal length
    for (;;) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
      const last = bytes[bytes.length - 1]!;
      if ((v === 0n && !(last & 0x80)) || (v === -1n && last & 0x80)) break;
    }
    return this.raw(0x8a, bytes.length, ...bytes);
  }
  float(x: number) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.raw(0x47, ...b);
  }
  none() {
    return this.raw(0x4e);
  }
  bool(b: boolean) {
    return this.raw(b ? 0x88 : 0x89);
  }
  emptyTuple() {
    return this.raw(0x29);
  }
  tuple() {
    return this.raw(0x74);
  }
  tuple1() {
    return this.raw(0x85);
  }
  tuple2() {
    return this.raw(0x86);
  }
  tuple3() {
    return this.raw(0x87);
  }
  emptyList() {
    return this.raw(0x5d);
  }
  append() {
    return this.raw(0x61);
  }
  appends() {
    return this.raw(0x65);
  }
  emptyDict() {
    return this.raw(0x7d);
  }
  dict() {
    return this.raw(0x64);
  }
  setitem() {
    return this.raw(0x73);
  }
  setitems() {
    return this.raw(0x75);
  }
  reduce() {
    return this.raw(0x52);
  }
  newobj() {
    return this.raw(0x81);
  }
  build() {
    return this.raw(0x62);
  }
  binpersid() {
    return this.raw(0x51);
  }
  binput(i: number) {
    return this.raw(0x71, i);
  }
  longBinput(i: number) {
    return this.raw(0x72, ...this.u32(i));
  }
  binget(i: number) {
    return this.raw(0x68, i);
  }
  longBinget(i: number) {
    return this.raw(0x6a, ...this.u32(i));
  }
  memoize() {
    return this.raw(0x94);
  }
  ints(xs: readonly number[]) {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  /**
   * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` with the
   * storage as the persistent id ('storage', torch.<cls>, key, 'cpu', numel).
   */
  tensor(t: { storageClass: string; key: string; numel: number; offset: number; size: number[]; stride: number[] }) {
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.mark();
    this.mark().str('storage').global('torch', t.storageClass).str(t.key).str('cpu').int(t.numel).tuple().binpersid();
    this.int(t.offset).ints(t.size).ints(t.stride).bool(false);
    this.global('collections', 'OrderedDict').emptyTuple().reduce();
    this.tuple().reduce();
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

export interface TensorSpec {
  storageClass: string;
  key: string;
  numel: number;
  offset?: number;
  size: number[];
  stride?: number[];
}

export function contiguous(size: number[]): number[] {
  const st: number[] = [];
  let s = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= size[i]!;
  }
  return st;
}

/** A pickled `{name: tensor}` dict (optionally as `{wrapper: {...}, 'epoch': 7}`), protocol 2. */
export function pickleTensorDict(entries: Array<[string, TensorSpec]>, opts: { wrapper?: string; ordered?: boolean } = {}): Uint8Array {
  const w = new PickleWriter().proto(2);
  if (opts.wrapper) w.emptyDict().str(opts.wrapper);
  if (opts.ordered) w.global('collections', 'OrderedDict').emptyTuple().reduce();
  else w.emptyDict();
  w.mark();
  for (const [name, t] of entries) {
    w.str(name).tensor({ offset: 0, stride: contiguous(t.size), ...t });
  }
  w.setitems();
  if (opts.wrapper) w.setitem().str('epoch').int(7).setitem();
  return w.stop().bytes();
}

/** A torch.save-style zip: <root>/data.pkl, <root>/data/<key>, <root>/version, optional byteorder. */
export function torchZip(opts: {
  root?: string;
  pickle: Uint8Array;
  storages: Record<string, Uint8Array>;
  byteorder?: 'little' | 'big';
  omitPickle?: boolean;
}): Uint8Array {
  const root = opts.root ?? 'archive';
  const files: Record<string, Uint8Array> = {};
  if (!opts.omitPickle) files[`${root}/data.pkl`] = opts.pickle;
  if (opts.byteorder) files[`${root}/byteorder`] = new TextEncoder().encode(opts.byteorder);
  for (const [k, v] of Object.entries(opts.storages)) files[`${root}/data/${k}`] = v;
  files[`${root}/version`] = new TextEncoder().encode('3\n');
  return zipSync(files, { level: 0 });
}

/** Little-endian (or big-endian) bytes of typed-array values. */
export function leBytes(arr: Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Uint16Array, bigEndian = false): Uint8Array {
  const b = new Uint8Array(arr.buffer.slice(arr.byteOffset, arr.byteOffset + arr.byteLength));
  if (bigEndian) {
    const s = arr.BYTES_PER_ELEMENT;
    for (let i = 0; i < b.length; i += s) b.subarray(i, i + s).reverse();
  }
  return b;
}
