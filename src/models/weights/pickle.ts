/**
 * A restricted unpickler: enough of Python's pickle protocols 0–5 to read what `torch.save` writes,
 * and nothing that could run code. Globals (GLOBAL, STACK_GLOBAL, INST) resolve only through an
 * allow-list of data-only constructors implemented here; any other global is an error naming it.
 *
 * Python values map to JavaScript as follows: None → null; bool → boolean; int → number (bigint when
 * beyond ±2^53); float → number; str → string; bytes/bytearray → Uint8Array; tuple → frozen array;
 * list → array; dict and OrderedDict → Map (keys as decoded); set/frozenset → Set; argparse.Namespace
 * → plain object; torch tensors → `TensorData` (see state-dict.ts).
 */
import {
  describeValue,
  gatherStrided,
  type DType,
  type TensorArray,
  type TensorData,
  typedArrayFromBytes,
} from './state-dict.ts';

export class PickleError extends Error {
  override name = 'PickleError';
}

/** A global that is not on the allow-list (loading it in Python could run arbitrary code). */
export class ForbiddenGlobalError extends PickleError {
  override name = 'ForbiddenGlobalError';
  constructor(
    readonly module: string,
    readonly qualname: string,
  ) {
    super(
      `refusing to load global ${module}.${qualname}: it is not on the allow-list of data-only types ` +
        `(a pickle can run arbitrary code through globals like this one; voco never does)`,
    );
  }
}

/** A resolved, allowed global. */
export interface PyGlobal {
  readonly pyName: string;
  /** REDUCE / NEWOBJ: called with the argument tuple. */
  call?(args: readonly unknown[], kwargs?: Map<unknown, unknown>): unknown;
  /** Set for torch storage classes: the dtype of their elements. */
  readonly storageDtype?: DType;
  /** Set for torch dtype objects (torch.float32 …). */
  readonly torchDtype?: DType;
}

/** What a torch persistent id resolves to: a storage's elements, lazily decoded per dtype. */
export interface TorchStorage {
  readonly kind: 'torch.storage';
  readonly key: string;
  readonly dtype: DType;
  readonly location: string;
  /** Elements of `dtype` (decoded once, host order). */
  elements(dtype?: DType): TensorArray;
}

export function isTorchStorage(x: unknown): x is TorchStorage {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'torch.storage';
}

export interface UnpickleOptions {
  /** Resolves PERSID / BINPERSID ids (torch uses them for storages). */
  persistentLoad?: (pid: unknown) => unknown;
}

// ----------------------------------------------------------------------------------------------
// Allow-list
// ----------------------------------------------------------------------------------------------

const STORAGE_CLASSES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

const TORCH_DTYPES: Record<string, DType> = {
  float32: 'float32',
  float: 'float32',
  float64: 'float64',
  double: 'float64',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

function asInt(x: unknown, what: string): number {
  if (typeof x === 'number' && Number.isInteger(x)) return x;
  if (typeof x === 'bigint' && x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(x);
  throw new PickleError(`${what}: expected an integer, got ${describeValue(x)}`);
}

function asIntTuple(x: unknown, what: string): number[] {
  if (!Array.isArray(x)) throw new PickleError(`${what}: expected a tuple of integers, got ${describeValue(x)}`);
  return x.map((v, i) => asInt(v, `${what}[${i}]`));
}

/** torch._utils._rebuild_tensor_v2 / _v3: a tensor as a strided view of a storage, copied into C order. */
function rebuildTensor(args: readonly unknown[], dtypeOverride?: DType): TensorData {
  const [storage, offset, size, stride] = args;
  if (!isTorchStorage(storage)) {
    throw new PickleError(`_rebuild_tensor: expected a storage as first argument, got ${describeValue(storage)}`);
  }
  const dtype = dtypeOverride ?? storage.dtype;
  const shape = asIntTuple(size, '_rebuild_tensor size');
  const strides = asIntTuple(stride, '_rebuild_tensor stride');
  const off = asInt(offset, '_rebuild_tensor storage_offset');
  try {
    const data = gatherStrided(storage.elements(dtype), off, shape, strides);
    return { dtype, shape, data };
  } catch (e) {
    throw new PickleError(`storage ${storage.key}: ${(e as Error).message}`);
  }
}

function global(pyName: string, props: Omit<PyGlobal, 'pyName'>): PyGlobal {
  return Object.freeze({ pyName, ...props });
}

function dictFromPairs(args: readonly unknown[]): Map<unknown, unknown> {
  const m = new Map<unknown, unknown>();
  const init = args[0];
  if (init instanceof Map) for (const [k, v] of init) m.set(k, v);
  else if (Array.isArray(init)) {
    for (const pair of init) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new PickleError('OrderedDict(): expected (key, value) pairs');
      m.set(pair[0], pair[1]);
    }
  } else if (init !== undefined && init !== null) throw new PickleError(`OrderedDict(): unexpected argument ${describeValue(init)}`);
  return m;
}

const NUMPY_SCALAR_TYPES: Record<string, DType> = {
  f8: 'float64',
  f4: 'float32',
  f2: 'float16',
  i8: 'int64',
  i4: 'int32',
  i2: 'int16',
  i1: 'int8',
  u1: 'uint8',
  b1: 'bool',
};

/** numpy.dtype('f8', ...) → a small descriptor; numpy scalars are decoded from their raw bytes. */
class NumpyDType {
  byteorder = '<';
  constructor(readonly code: string) {}
}

function buildAllowList(): Map<string, PyGlobal> {
  const g = new Map<string, PyGlobal>();
  const add = (x: PyGlobal) => g.set(x.pyName, x);
  add(global('collections.OrderedDict', { call: (args) => dictFromPairs(args) }));
  add(global('builtins.dict', { call: (args) => dictFromPairs(args) }));
  add(global('builtins.list', { call: (args) => (Array.isArray(args[0]) ? [...args[0]] : []) }));
  add(global('builtins.set', { call: (args) => new Set(Array.isArray(args[0]) ? args[0] : []) }));
  add(global('builtins.frozenset', { call: (args) => new Set(Array.isArray(args[0]) ? args[0] : []) }));
  add(global('builtins.slice', { call: (args) => ({ slice: [...args] }) }));
  add(global('builtins.complex', { call: (args) => ({ re: args[0] ?? 0, im: args[1] ?? 0 }) }));
  add(
    global('_codecs.encode', {
      // protocol 2 pickles bytes as _codecs.encode(text, 'latin1')
      call: (args) => {
        const [text, enc] = args;
        if (typeof text !== 'string') throw new PickleError('_codecs.encode: expected a str');
        const e = String(enc ?? 'utf-8').toLowerCase().replace('_', '-');
        if (e === 'latin1' || e === 'latin-1' || e === 'iso-8859-1') {
          return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
        }
        if (e === 'utf-8' || e === 'utf8') return new TextEncoder().encode(text);
        throw new PickleError(`_codecs.encode: unsupported encoding ${String(enc)}`);
      },
    }),
  );
  add(
    global('argparse.Namespace', {
      call: (args, kwargs) => {
        if (args.length) throw new PickleError('argparse.Namespace(): unexpected positional arguments');
        const o: Record<string, unknown> = {};
        if (kwargs) for (const [k, v] of kwargs) o[String(k)] = v;
        return o;
      },
    }),
  );
  add(global('torch._utils._rebuild_tensor_v2', { call: (args) => rebuildTensor(args) }));
  add(global('torch._utils._rebuild_tensor', { call: (args) => rebuildTensor(args) }));
  add(
    global('torch._utils._rebuild_tensor_v3', {
      // (storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata?)
      call: (args) => {
        const dt = args[6] as PyGlobal | undefined;
        if (!dt?.torchDtype) throw new PickleError(`_rebuild_tensor_v3: expected a torch dtype, got ${describeValue(dt)}`);
        return rebuildTensor(args, dt.torchDtype);
      },
    }),
  );
  add(
    global('torch._tensor._rebuild_from_type_v2', {
      // (func, new_type, args, state): tensor subclasses; we keep the plain tensor func(*args) builds
      call: (args) => callGlobal(args[0], args[2]),
    }),
  );
  add(global('torch.Tensor', {}));
  add(global('torch.nn.parameter.Parameter', {}));
  add(global('torch._utils._rebuild_parameter', { call: (args) => args[0] }));
  add(global('torch._utils._rebuild_parameter_with_state', { call: (args) => args[0] }));
  add(global('torch.device', { call: (args) => ({ device: args.map(String).join(':') }) }));
  add(global('torch.Size', { call: (args) => (Array.isArray(args[0]) ? Object.freeze([...args[0]]) : Object.freeze([])) }));
  add(global('torch.serialization._get_layout', { call: (args) => ({ layout: String(args[0]) }) }));
  for (const [cls, dtype] of Object.entries(STORAGE_CLASSES)) {
    add(global(`torch.${cls}`, { storageDtype: dtype }));
    add(global(`torch.storage.${cls}`, { storageDtype: dtype }));
    add(global(`torch.cuda.${cls}`, { storageDtype: dtype }));
  }
  add(global('torch.storage.TypedStorage', { storageDtype: 'uint8' }));
  for (const [name, dtype] of Object.entries(TORCH_DTYPES)) add(global(`torch.${name}`, { torchDtype: dtype }));
  add(
    global('numpy.dtype', {
      call: (args) => {
        const code = String(args[0]);
        if (!NUMPY_SCALAR_TYPES[code]) throw new PickleError(`numpy.dtype(${JSON.stringify(code)}) is not supported`);
        return new NumpyDType(code);
      },
    }),
  );
  const scalar = global('numpy.core.multiarray.scalar', {
    // numpy scalars (e.g. a best_acc saved as np.float64): scalar(dtype, raw little-endian bytes)
    call: (args) => {
      const [dt, raw] = args;
      if (!(dt instanceof NumpyDType) || !(raw instanceof Uint8Array)) {
        throw new PickleError('numpy scalar: expected (dtype, bytes)');
      }
      const dtype = NUMPY_SCALAR_TYPES[dt.code]!;
      const arr = typedArrayFromBytes(dtype, raw, dt.byteorder === '>');
      if (arr.length !== 1) throw new PickleError('numpy scalar: wrong byte count');
      const v = arr[0]!;
      if (dtype === 'bool') return v !== 0;
      if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      return v;
    },
  });
  g.set(scalar.pyName, scalar);
  g.set('numpy._core.multiarray.scalar', scalar);
  return g;
}

const ALLOWED = buildAllowList();

/** The names of allowed globals, for error messages and documentation. */
export function allowedGlobals(): string[] {
  return [...ALLOWED.keys()];
}

export function resolveGlobal(module: string, qualname: string): PyGlobal {
  const hit = ALLOWED.get(`${module}.${qualname}`);
  if (!hit) throw new ForbiddenGlobalError(module, qualname);
  return hit;
}

// ----------------------------------------------------------------------------------------------
// The machine
// ----------------------------------------------------------------------------------------------

const MARK = Symbol('mark');
const textDecoder = new TextDecoder('utf-8', { fatal: true });

function tuple(items: unknown[]): readonly unknown[] {
  return Object.freeze(items);
}

function isTuple(x: unknown): boolean {
  return Array.isArray(x) && Object.isFrozen(x);
}

function callGlobal(fn: unknown, args: unknown, kwargs?: Map<unknown, unknown>): unknown {
  const g = fn as PyGlobal | undefined;
  if (!g || typeof g !== 'object' || typeof g.pyName !== 'string') {
    throw new PickleError(`cannot call ${describeValue(fn)}: only allowed globals are callable`);
  }
  if (!g.call) throw new PickleError(`${g.pyName} is not callable here`);
  if (!Array.isArray(args)) throw new PickleError(`${g.pyName}: arguments must be a tuple, got ${describeValue(args)}`);
  return g.call(args, kwargs);
}

function setState(obj: unknown, state: unknown): void {
  if (obj instanceof NumpyDType) {
    // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
    if (Array.isArray(state) && typeof state[1] === 'string') obj.byteorder = state[1];
    return;
  }
  // OrderedDict state from torch (`_metadata` per-module versions) and similar: ignored.
  if (obj instanceof Map || obj === null || typeof obj !== 'object' || Array.isArray(obj) || ArrayBuffer.isView(obj)) return;
  if ((obj as { kind?: unknown }).kind === 'torch.storage' || 'dtype' in obj) return;
  const apply = (s: unknown) => {
    if (s instanceof Map) for (const [k, v] of s) (obj as Record<string, unknown>)[String(k)] = v;
  };
  if (Array.isArray(state) && state.length === 2) {
    apply(state[0]);
    apply(state[1]);
  } else apply(state);
}

/** Unpickles `bytes` (protocols 0–5), resolving globals only through the allow-list. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string, at = pos): never => {
    throw new PickleError(`pickle byte ${at}: ${msg}`);
  };
  const need = (k: number) => {
    if (k < 0 || pos + k > n) fail(`truncated: needs ${k} more bytes, ${n - pos} left`);
  };
  const u8 = () => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('length too large');
    return Number(v);
  };
  const take = (k: number) => {
    need(k);
    const s = bytes.subarray(pos, pos + k);
    pos += k;
    return s;
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('truncated: missing newline');
    const s = new TextDecoder('latin1').decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s.endsWith('\r') ? s.slice(0, -1) : s;
  };
  const utf8 = (b: Uint8Array) => {
    try {
      return textDecoder.decode(b);
    } catch {
      return fail('invalid UTF-8 in string');
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail('MARK expected');
    stack = prev!;
    return items;
  };
  const push = (x: unknown) => stack.push(x);
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} not found`);
    return memo.get(i);
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const parseIntText = (s: string): number | bigint | boolean => {
    if (s === '00') return false;
    if (s === '01') return true;
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) fail(`bad integer ${JSON.stringify(s)}`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (!(d instanceof Map)) fail(`SETITEM(S) on ${describeValue(d)}`);
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (d as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (l: unknown, items: unknown[]) => {
    if (!Array.isArray(l) || isTuple(l)) fail(`APPEND(S) on ${describeValue(l)}`);
    (l as unknown[]).push(...items);
  };
  const persistent = (pid: unknown) => {
    if (!opts.persistentLoad) fail('persistent id found but no persistent_load was given');
    return opts.persistentLoad!(pid);
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: {
        // PROTO
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`, at);
        break;
      }
      case 0x95: // FRAME (length is advisory)
        u64();
        break;
      case 0x2e: {
        // STOP
        if (metastack.length) fail('STOP inside an open MARK', at);
        if (stack.length !== 1) fail(`STOP with ${stack.length} items on the stack`, at);
        return stack[0];
      }
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      // ---- integers and floats
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(decodeLong(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const len = i32();
        if (len < 0) fail('negative LONG4 length', at);
        push(decodeLong(take(len)));
        break;
      }
      case 0x49: // INT
        push(parseIntText(line()));
        break;
      case 0x4c: // LONG
        push(parseIntText(line()));
        break;
      case 0x47: {
        // BINFLOAT (big-endian double)
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: {
        // FLOAT
        const s = line();
        const v = Number(s);
        if (Number.isNaN(v) && !/nan/i.test(s)) fail(`bad float ${JSON.stringify(s)}`, at);
        push(v);
        break;
      }
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      // ---- strings and bytes
      case 0x58: // BINUNICODE
        push(utf8(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8(take(u64())));
        break;
      case 0x56: {
        // UNICODE (raw-unicode-escape)
        const s = line().replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_m, a: string, b: string) =>
          String.fromCodePoint(parseInt(a ?? b, 16)),
        );
        push(s);
        break;
      }
      case 0x54: {
        // BINSTRING (Python 2 str, decoded as latin-1)
        const len = i32();
        if (len < 0) fail('negative BINSTRING length', at);
        push(new TextDecoder('latin1').decode(take(len)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(new TextDecoder('latin1').decode(take(u8())));
        break;
      case 0x53: {
        // STRING (quoted Python 2 str)
        const s = line();
        if (s.length < 2 || s[0] !== s[s.length - 1] || (s[0] !== "'" && s[0] !== '"')) fail('bad STRING', at);
        push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(take(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        push(take(u64()).slice());
        break;
      // ---- containers
      case 0x29: // EMPTY_TUPLE
        push(tuple([]));
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(tuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(tuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const d = new Map();
        setItems(d, items);
        push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on ${describeValue(s)}`, at);
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      // ---- memo
      case 0x70: // PUT
        memo.set(Number(parseIntText(line())), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET
        push(memoGet(Number(parseIntText(line()))));
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      // ---- objects
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings', at);
        push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x69: {
        // INST "module\nname\n" with args after MARK
        const module = line();
        const name = line();
        const g = resolveGlobal(module, name);
        push(callGlobal(g, tuple(popMark())));
        break;
      }
      case 0x6f: {
        // OBJ: MARK cls args...
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class', at);
        push(callGlobal(items[0], tuple(items.slice(1))));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        push(callGlobal(fn, args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        push(callGlobal(cls, args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        push(callGlobal(cls, args, kwargs instanceof Map ? kwargs : undefined));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        setState(top(), state);
        break;
      }
      case 0x50: // PERSID
        push(persistent(line()));
        break;
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      case 0x82:
      case 0x83:
      case 0x84:
        fail('extension registry opcodes (EXT1/2/4) are not supported', at);
        break;
      case 0x97:
      case 0x98:
        fail('out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not supported', at);
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`, at);
    }
  }
}
