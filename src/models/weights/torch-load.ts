/**
 * Reads checkpoints written by `torch.save` (the zip format, torch ≥ 1.6) without Python.
 *
 * Layout of the archive (every entry under one root folder, usually the file's stem):
 *   <root>/data.pkl     the pickled object; tensors are `_rebuild_tensor_v2(storage, offset, size,
 *                       stride, …)` calls whose storages are persistent ids
 *                       ('storage', <storage class>, <key>, <location>, <numel>)
 *   <root>/data/<key>   the raw bytes of each storage
 *   <root>/version      the format version (text)
 *   <root>/byteorder    'little' or 'big' (absent in files from torch < 2.1: little)
 * Nothing in the pickle can run code: see pickle.ts.
 */
import { readFile } from 'node:fs/promises';
import { unzipSync } from 'fflate';
import { isTorchStorage, PickleError, unpickle, type PyGlobal, type TorchStorage } from './pickle.ts';
import {
  DTYPES,
  HOST_LITTLE_ENDIAN,
  describeValue,
  normalizeStateDict,
  typedArrayFromBytes,
  type DType,
  type NormalizeOptions,
  type StateDict,
  type TensorArray,
} from './state-dict.ts';

export class TorchLoadError extends Error {
  override name = 'TorchLoadError';
}

export interface TorchCheckpoint {
  /** The normalised state dict (see `normalizeStateDict`). */
  dict: StateDict;
  /** What was read and what normalisation did. */
  notes: string[];
  /** The whole unpickled object (dicts are Maps, tensors are TensorData). */
  raw: unknown;
}

/**
 * Legacy (pre-1.6, non-zip) torch.save files begin with a pickled magic number, 0x1950a86a20f9469cfc6c,
 * written as LONG1 with these 10 little-endian bytes (after PROTO, and FRAME for protocol ≥ 4).
 */
const LEGACY_MAGIC = Uint8Array.from([0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

function isLegacyTorch(bytes: Uint8Array): boolean {
  if (bytes[0] !== 0x80) return false;
  const head = bytes.subarray(0, 64);
  outer: for (let i = 0; i + LEGACY_MAGIC.length <= head.length; i++) {
    for (let j = 0; j < LEGACY_MAGIC.length; j++) if (head[i + j] !== LEGACY_MAGIC[j]) continue outer;
    return true;
  }
  return false;
}

/** A safetensors file: an 8-byte little-endian header length, then a JSON object. */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10 || bytes[8] !== 0x7b) return false;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return n >= 2n && n <= BigInt(bytes.length - 8);
}

function startsWith(bytes: Uint8Array, prefix: ArrayLike<number>): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function isTar(bytes: Uint8Array): boolean {
  return bytes.length >= 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar';
}

const text = (b: Uint8Array) => new TextDecoder('utf-8').decode(b).trim();

export interface ParsedTorchFile {
  raw: unknown;
  notes: string[];
}

/**
 * Unpickles a `torch.save` zip archive held in memory. `name` is used in error messages only.
 */
export function parseTorchFile(bytes: Uint8Array, name = 'checkpoint'): ParsedTorchFile {
  if (!startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) {
    if (isLegacyTorch(bytes) || isTar(bytes)) {
      throw new TorchLoadError(
        `${name}: this is the legacy (non-zip) torch.save format written by torch < 1.6 (or with ` +
          `_use_new_zipfile_serialization=False), which voco does not read; re-save it with a newer torch: ` +
          `torch.save(torch.load(path, map_location="cpu"), new_path)`,
      );
    }
    if (startsWith(bytes, [0x50, 0x4b, 0x05, 0x06])) throw new TorchLoadError(`${name}: the zip archive is empty`);
    if (looksLikeSafetensors(bytes)) throw new TorchLoadError(`${name}: this is a safetensors file, not a torch.save checkpoint; read it with readSafetensors`);
    if (bytes[0] === 0x80) {
      throw new TorchLoadError(`${name}: this is a bare pickle, not a torch.save checkpoint (torch.save writes a zip archive)`);
    }
    const hint = bytes.length === 0 ? 'the file is empty' : `it starts with bytes ${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`;
    throw new TorchLoadError(`${name}: not a torch.save checkpoint: not a zip archive (${hint})`);
  }
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    throw new TorchLoadError(
      `${name}: the zip archive is truncated or corrupt (${(e as Error).message}); the file is ${bytes.length} bytes`,
    );
  }
  const pkls = Object.keys(files).filter((f) => /^[^/]+\/data\.pkl$/.test(f) || f === 'data.pkl');
  if (Object.keys(files).some((f) => /^[^/]+\/(constants\.pkl|code\/)/.test(f))) {
    throw new TorchLoadError(
      `${name}: this is a TorchScript archive (torch.jit.save), which holds code as well as weights; ` +
        `voco reads torch.save checkpoints: in Python, torch.save(torch.jit.load(path).state_dict(), new_path)`,
    );
  }
  if (pkls.length === 0) {
    const listed = Object.keys(files).slice(0, 8).join(', ') || '(no entries)';
    throw new TorchLoadError(`${name}: no data.pkl in the zip archive, so it is not a torch.save checkpoint (entries: ${listed})`);
  }
  if (pkls.length > 1) throw new TorchLoadError(`${name}: several data.pkl records (${pkls.join(', ')})`);
  const root = pkls[0]!.slice(0, -'data.pkl'.length);
  const notes: string[] = [];
  const version = files[`${root}version`] ?? files[`${root}.data/version`];
  if (version) notes.push(`torch zip format, version ${text(version)}, root ${JSON.stringify(root.replace(/\/$/, ''))}`);
  const bo = files[`${root}byteorder`];
  const byteorder = bo ? text(bo) : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') throw new TorchLoadError(`${name}: unknown byteorder ${JSON.stringify(byteorder)}`);
  if (bo) notes.push(`byteorder ${byteorder}`);
  const bigEndian = byteorder === 'big';

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
      throw new TorchLoadError(`${name}: unsupported persistent id ${describeValue(pid)} (expected a storage record)`);
    }
    const [, cls, key0, location, numel0] = pid as [unknown, PyGlobal, unknown, unknown, unknown];
    const key = String(key0);
    const known = storages.get(key);
    if (known) return known;
    const dtype = cls?.storageDtype;
    if (!dtype) throw new TorchLoadError(`${name}: storage ${key} has an unknown storage type ${describeValue(cls)}`);
    const numel = Number(numel0);
    const entry = `${root}data/${key}`;
    const raw = files[entry];
    if (!raw) throw new TorchLoadError(`${name}: storage ${JSON.stringify(entry)} is missing from the archive`);
    const size = DTYPES[dtype].bytes;
    if (!Number.isSafeInteger(numel) || numel < 0) throw new TorchLoadError(`${name}: storage ${key} has a bad size ${String(numel0)}`);
    if (raw.length < numel * size) {
      throw new TorchLoadError(
        `${name}: storage ${JSON.stringify(entry)} is truncated: ${numel} ${dtype} elements need ${numel * size} bytes, the archive holds ${raw.length}`,
      );
    }
    const decoded = new Map<DType, TensorArray>();
    const storage: TorchStorage = {
      kind: 'torch.storage',
      key,
      dtype,
      location: String(location),
      elements(as: DType = dtype): TensorArray {
        let arr = decoded.get(as);
        if (!arr) {
          const nbytes = as === dtype ? numel * size : numel * size - ((numel * size) % DTYPES[as].bytes);
          const el = DTYPES[as].bytes;
          // fflate hands each entry its own buffer, so a view is safe when no byte swap is needed
          arr =
            !bigEndian && HOST_LITTLE_ENDIAN && raw.byteOffset % el === 0
              ? new DTYPES[as].ctor(raw.buffer, raw.byteOffset, nbytes / el)
              : typedArrayFromBytes(as, raw.subarray(0, nbytes), bigEndian);
          decoded.set(as, arr);
        }
        return arr;
      },
    };
    storages.set(key, storage);
    return storage;
  };
  let raw: unknown;
  try {
    raw = unpickle(files[pkls[0]!]!, { persistentLoad });
  } catch (e) {
    if (e instanceof PickleError) throw new TorchLoadError(`${name}: ${e.message}`, { cause: e });
    throw e;
  }
  if (isTorchStorage(raw)) throw new TorchLoadError(`${name}: the checkpoint holds a bare storage, not tensors`);
  notes.push(`${storages.size} storage record${storages.size === 1 ? '' : 's'}`);
  return { raw, notes };
}

/** Reads and normalises a `.pt` / `.pth` checkpoint (see `normalizeStateDict`). */
export async function readTorchCheckpoint(path: string, opts: NormalizeOptions = {}): Promise<TorchCheckpoint> {
  const bytes = await readWholeFile(path);
  return torchCheckpointFromBytes(bytes, path, opts);
}

export function torchCheckpointFromBytes(bytes: Uint8Array, name = 'checkpoint', opts: NormalizeOptions = {}): TorchCheckpoint {
  const { raw, notes } = parseTorchFile(bytes, name);
  let norm: { dict: StateDict; notes: string[] };
  try {
    norm = normalizeStateDict(raw, opts);
  } catch (e) {
    throw new TorchLoadError(`${name}: ${(e as Error).message}`, { cause: e });
  }
  return { dict: norm.dict, notes: [...notes, ...norm.notes], raw };
}

/** Reads a file into memory, with a clear message for files too large for one buffer (2 GiB). */
export async function readWholeFile(path: string): Promise<Uint8Array> {
  try {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_FS_FILE_TOO_LARGE') {
      throw new TorchLoadError(`${path}: files over 2 GiB are not supported yet (weights are read into memory whole)`, { cause: e });
    }
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TorchLoadError(`${path}: no such file`, { cause: e });
    throw e;
  }
}
