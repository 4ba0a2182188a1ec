// Worker-thread entry: plain JavaScript so it can register tsx before loading TypeScript modules.
import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const modules = new Map();

parentPort.on('message', async ({ id, module, fn, args }) => {
  try {
    let mod = modules.get(module);
    if (!mod) {
      mod = await import(module);
      modules.set(module, mod);
    }
    if (typeof mod[fn] !== 'function') throw new Error(`${module} has no exported function ${fn}`);
    const { result, transfer } = splitTransfer(await mod[fn](...args));
    parentPort.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    parentPort.postMessage({ id, ok: false, error: { message: e?.message ?? String(e), name: e?.name, stack: e?.stack, file: e?.file, field: e?.field } });
  }
});

/** Transfers (rather than copies) every ArrayBuffer found at the top two levels of the result. */
function splitTransfer(result) {
  const transfer = new Set();
  const visit = (v, depth) => {
    if (!v || typeof v !== 'object' || depth > 3) return;
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer) transfer.add(v.buffer);
      return;
    }
    for (const x of Object.values(v)) visit(x, depth + 1);
  };
  visit(result, 0);
  return { result, transfer: [...transfer] };
}
