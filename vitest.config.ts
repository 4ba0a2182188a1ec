import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Model tests run on the tensorflow (tfjs-node) backend whenever its addon is built — as it is
// after `npm ci` (scripts/install-tensorflow.mjs) — and on pure-JS cpu otherwise.
const tfjsNodeBuilt = existsSync('node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node');
process.env.VOCO_TEST_BACKEND ??= tfjsNodeBuilt ? 'tensorflow' : 'cpu';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
