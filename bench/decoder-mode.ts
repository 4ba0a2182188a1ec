/** Runs fn with the WebAssembly kernel off (the JavaScript decoder), to measure both paths in one run. */
export function withJs<T>(fn: () => T): T {
  const before = process.env.VOCO_CODEC_WASM;
  process.env.VOCO_CODEC_WASM = '0';
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.VOCO_CODEC_WASM;
    else process.env.VOCO_CODEC_WASM = before;
  }
}
