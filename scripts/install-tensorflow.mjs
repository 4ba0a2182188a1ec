#!/usr/bin/env node
// "Bring your own TensorFlow": makes the `tensorflow` compute backend (@tensorflow/tfjs-node)
// work without reaching Google's download host. Runs as the root `postinstall` (which npm runs
// under both `npm install` and `npm ci`), and by hand: `node scripts/install-tensorflow.mjs`.
//
//   1. @tensorflow/tfjs-node already loads and runs a conv3d          -> done (a fast no-op)
//   2. a tensorflow-cpu wheel: $VOCO_TENSORFLOW_WHEEL, else one cached under ~/.cache/voco/wheels,
//      else `python3 -m pip download --no-deps --only-binary=:all: tensorflow-cpu==2.21.*`
//   3. libtensorflow_cc.so.2 + libtensorflow_framework.so.2 and the C headers the binding
//      includes, extracted once to ~/.cache/voco/tensorflow/<wheel>/, hard-linked (or copied)
//      into node_modules/@tensorflow/tfjs-node/deps/{lib,include}
//   4. node-gyp builds the addon from source against them (the package's own install script,
//      which downloads libtensorflow 2.9.1, is denied in package.json#allowScripts)
//   5. verify: load the addon in a child process and run a tiny conv3d
//   no wheel at all -> tfjs-node's own installer (works only where Google's host is reachable)
//
// It never fails the install: when it cannot work it prints one line saying why, and voco uses
// the pure-JS `cpu` backend. Environment: VOCO_TENSORFLOW_WHEEL=<path to a tensorflow(-cpu)
// wheel>, VOCO_SKIP_TENSORFLOW=1 to skip, VOCO_CACHE_HOME (default $XDG_CACHE_HOME/voco or
// ~/.cache/voco), VOCO_PYTHON (default python3).
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir, platform, arch } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createInflateRaw } from 'node:zlib';

const TF_PIP_SPEC = 'tensorflow-cpu==2.21.*';
const PREFIX = 'voco:';
const FALLBACK = 'voco will use the pure-JS cpu backend (see README, "Compute backends")';
const t0 = performance.now();
const secs = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
const log = (msg) => console.log(`${PREFIX} ${msg}`);

class Skip extends Error {}

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(projectRoot, 'package.json'));

function cacheHome() {
  if (process.env.VOCO_CACHE_HOME) return resolve(process.env.VOCO_CACHE_HOME);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), 'voco');
}

/** Loads the addon in a child process (a broken libtensorflow must not take this process down). */
function verifyAddon(pkg) {
  const code = `
    const tf = require(${JSON.stringify(pkg)});
    const x = tf.ones([1, 3, 3, 3, 1]), w = tf.ones([2, 2, 2, 1, 1]);
    const y = tf.conv3d(x, w, 1, 'valid');
    const v = y.dataSync();
    if (v.length !== 8 || v.some((e) => e !== 8)) throw new Error('conv3d gave ' + Array.from(v));
    process.stdout.write(JSON.stringify({ tf: tf.version && tf.version['tfjs-node'], backend: tf.getBackend() }));`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: projectRoot, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  if (r.status === 0) return { ok: true };
  const err = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
  const line =
    err.split('\n').find((l) => /can not be found|cannot open shared object|Cannot find module|Error:/.test(l)) ??
    err.trim().split('\n').pop() ??
    `exit ${r.status}`;
  return { ok: false, why: line.trim().slice(0, 240) };
}

function resolvePackageDir(name) {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch {
    return null;
  }
}

// ---------- wheel ----------

async function findWheel(cache) {
  const env = process.env.VOCO_TENSORFLOW_WHEEL;
  if (env) {
    const p = resolve(env);
    if (!existsSync(p)) throw new Skip(`VOCO_TENSORFLOW_WHEEL=${env} does not exist`);
    log(`using the wheel in VOCO_TENSORFLOW_WHEEL: ${p}`);
    return p;
  }
  const wheels = join(cache, 'wheels');
  const cached = async () =>
    (await fs.readdir(wheels).catch(() => []))
      .filter((f) => /^tensorflow(_cpu)?-2\.21\.[^-]+-.*(manylinux|linux).*_x86_64\.whl$/.test(f))
      .sort()
      .map((f) => join(wheels, f))
      .pop();
  const hit = await cached();
  if (hit) {
    log(`using the cached wheel ${hit}`);
    return hit;
  }
  const python = process.env.VOCO_PYTHON || 'python3';
  const tmp = join(wheels, `.download-${process.pid}`);
  await fs.mkdir(tmp, { recursive: true });
  log(`downloading ${TF_PIP_SPEC} with ${python} -m pip download (about 270 MB) into ${wheels} ...`);
  const t = performance.now();
  const r = spawnSync(
    python,
    ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--progress-bar', 'off', '--dest', tmp, TF_PIP_SPEC],
    { encoding: 'utf8', timeout: 30 * 60_000, maxBuffer: 64 << 20 },
  );
  try {
    if (r.error) throw new Skip(`no TensorFlow wheel: ${python} could not run (${r.error.message})`);
    if (r.status !== 0) {
      const lines = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean);
      const why = lines.find((l) => /^ERROR:/.test(l)) ?? lines.pop() ?? `exit ${r.status}`;
      throw new Skip(`no TensorFlow wheel: pip download ${TF_PIP_SPEC} failed (${why.slice(0, 200)})`);
    }
    const got = (await fs.readdir(tmp)).find((f) => f.endsWith('.whl'));
    if (!got) throw new Skip('no TensorFlow wheel: pip download produced no .whl');
    await fs.rename(join(tmp, got), join(wheels, got));
    log(`downloaded ${got} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  const wheel = await cached();
  if (!wheel) throw new Skip('pip downloaded a wheel that is not TensorFlow 2.21 for linux x86_64');
  return wheel;
}

// ---------- a minimal zip reader (a wheel is a zip; zip64 aware) ----------

async function readZipEntries(file) {
  const fh = await fs.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const tailLen = Math.min(size, 65_557);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, size - tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    if (eocd < 0) throw new Error(`${basename(file)} is not a zip file`);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) throw new Error('zip64 locator missing');
      const z64 = Buffer.alloc(56);
      await fh.read(z64, 0, 56, Number(tail.readBigUInt64LE(loc + 8)));
      count = Number(z64.readBigUInt64LE(32));
      cdSize = Number(z64.readBigUInt64LE(40));
      cdOffset = Number(z64.readBigUInt64LE(48));
    }
    const cd = Buffer.alloc(cdSize);
    await fh.read(cd, 0, cdSize, cdOffset);
    const entries = new Map();
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error('bad zip central directory');
      const method = cd.readUInt16LE(p + 10);
      let compSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let offset = cd.readUInt32LE(p + 42);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      let e = p + 46 + nameLen;
      const end = e + extraLen;
      while (e + 4 <= end) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          if (size === 0xffffffff) { size = Number(cd.readBigUInt64LE(q)); q += 8; }
          if (compSize === 0xffffffff) { compSize = Number(cd.readBigUInt64LE(q)); q += 8; }
          if (offset === 0xffffffff) { offset = Number(cd.readBigUInt64LE(q)); q += 8; }
        }
        e += 4 + len;
      }
      entries.set(name, { name, method, compSize, size, offset });
      p = end + commentLen;
    }
    return entries;
  } finally {
    await fh.close();
  }
}

async function extractEntry(file, entry, dest) {
  const fh = await fs.open(file, 'r');
  const local = Buffer.alloc(30);
  try {
    await fh.read(local, 0, 30, entry.offset);
  } finally {
    await fh.close();
  }
  if (local.readUInt32LE(0) !== 0x04034b50) throw new Error(`bad zip local header for ${entry.name}`);
  const start = entry.offset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  await fs.mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.part`;
  const src = entry.compSize > 0 ? createReadStream(file, { start, end: start + entry.compSize - 1 }) : null;
  if (!src) await fs.writeFile(tmp, '');
  else if (entry.method === 0) await pipeline(src, createWriteStream(tmp));
  else if (entry.method === 8) await pipeline(src, createInflateRaw(), createWriteStream(tmp));
  else throw new Error(`zip method ${entry.method} not supported (${entry.name})`);
  const { size } = await fs.stat(tmp);
  if (size !== entry.size) throw new Error(`${entry.name}: extracted ${size} bytes, expected ${entry.size}`);
  await fs.rename(tmp, dest);
}

/** The quoted `tensorflow/...`, `tsl/...`, `xla/...` includes of a C/C++ source. */
const includesOf = (text) => [...text.matchAll(/^\s*#\s*include\s*"((?:tensorflow|tsl|xla)\/[^"]+)"/gm)].map((m) => m[1]);

/**
 * Extracts the two libraries and the header closure the binding needs into
 * <cache>/tensorflow/<wheel>/{lib,include} (once per wheel).
 */
async function extractWheel(wheel, cache, bindingDir) {
  const target = join(cache, 'tensorflow', basename(wheel, '.whl'));
  const stamp = join(target, 'complete.json');
  if (existsSync(stamp)) {
    log(`libtensorflow already extracted in ${target}`);
    return { dir: target, ...JSON.parse(readFileSync(stamp, 'utf8')) };
  }
  const t = performance.now();
  const entries = await readZipEntries(wheel);
  const libs = [...entries.keys()].filter((n) => /^tensorflow\/libtensorflow(_cc|_framework)\.so\.\d+$/.test(n));
  const cc = libs.find((n) => n.includes('libtensorflow_cc'));
  const fw = libs.find((n) => n.includes('libtensorflow_framework'));
  if (!cc || !fw) throw new Skip(`${basename(wheel)} has no tensorflow/libtensorflow_cc.so.* and libtensorflow_framework.so.*`);
  const inc = 'tensorflow/include/';
  // Header closure, starting from what the binding itself includes.
  const roots = new Set(['tensorflow/c/c_api.h', 'tensorflow/c/eager/c_api.h']);
  for (const f of await fs.readdir(bindingDir)) {
    if (/\.(cc|h)$/.test(f)) for (const h of includesOf(await fs.readFile(join(bindingDir, f), 'utf8'))) roots.add(h);
  }
  const headers = new Set();
  const todo = [...roots];
  const tmp = `${target}.tmp-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  while (todo.length) {
    const h = todo.pop();
    if (headers.has(h)) continue;
    const entry = entries.get(inc + h);
    if (!entry) {
      if (roots.has(h)) throw new Skip(`${basename(wheel)} lacks the header ${h}`);
      continue; // an optional include the binding never sees; the compiler will say if not
    }
    headers.add(h);
    const dest = join(tmp, 'include', h);
    await extractEntry(wheel, entry, dest);
    todo.push(...includesOf(await fs.readFile(dest, 'utf8')));
  }
  log(`extracting ${basename(cc)} (${(entries.get(cc).size / 1e6).toFixed(0)} MB), ${basename(fw)} and ${headers.size} headers ...`);
  await Promise.all([
    extractEntry(wheel, entries.get(cc), join(tmp, 'lib', basename(cc))),
    extractEntry(wheel, entries.get(fw), join(tmp, 'lib', basename(fw))),
  ]);
  const version = /-(\d+\.\d+\.\d+)/.exec(basename(wheel))?.[1] ?? 'unknown';
  const info = { wheel: basename(wheel), version, cc: basename(cc), framework: basename(fw) };
  await fs.writeFile(join(tmp, 'complete.json'), JSON.stringify(info, null, 2));
  await fs.rm(target, { recursive: true, force: true });
  await fs.rename(tmp, target);
  log(`extracted in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { dir: target, ...info };
}

/** Hard-links a tree (falls back to a copy across file systems). */
async function linkTree(src, dest) {
  await fs.mkdir(dest, { recursive: true });
  for (const ent of await fs.readdir(src, { withFileTypes: true })) {
    const s = join(src, ent.name);
    const d = join(dest, ent.name);
    if (ent.isDirectory()) await linkTree(s, d);
    else {
      await fs.rm(d, { force: true });
      await fs.link(s, d).catch(() => fs.copyFile(s, d));
    }
  }
}

// ---------- build ----------

function findNodeGyp() {
  const execDir = dirname(process.execPath);
  const candidates = [
    process.env.npm_config_node_gyp,
    join(execDir, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(execDir, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {}
  return candidates.find((c) => c && existsSync(c));
}

function findNodeDir() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm && existsSync(join(fromNpm, 'include', 'node', 'node_api.h'))) return fromNpm;
  const guess = resolve(dirname(process.execPath), '..');
  if (existsSync(join(guess, 'include', 'node', 'node_api.h'))) return guess;
  return undefined; // node-gyp then downloads the headers (only where nodejs.org is reachable)
}

async function buildAddon(pkgDir, tf) {
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) throw new Skip('node-gyp not found (it comes with npm; set npm_config_node_gyp)');
  const deps = join(pkgDir, 'deps');
  await fs.rm(deps, { recursive: true, force: true });
  await linkTree(join(tf.dir, 'include'), join(deps, 'include'));
  await linkTree(join(tf.dir, 'lib'), join(deps, 'lib'));
  // binding.gyp links -ltensorflow -ltensorflow_framework with rpath $ORIGIN/../../deps/lib; the
  // wheel's libtensorflow_cc exports the whole C API. The SONAMEs (libtensorflow_cc.so.2, ...)
  // become the addon's DT_NEEDED, so the real files keep their names.
  await fs.symlink(tf.cc, join(deps, 'lib', 'libtensorflow.so'));
  await fs.symlink(tf.framework, join(deps, 'lib', 'libtensorflow_framework.so'));
  const pj = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const napi = Math.max(...pj.binary.napi_versions.filter((v) => v <= Number(process.versions.napi)));
  const modulePath = resolve(pkgDir, pj.binary.module_path.replace('{napi_build_version}', String(napi)));
  const nodedir = findNodeDir();
  const args = [
    nodeGyp, 'rebuild', `--directory=${pkgDir}`, '--jobs=max',
    `--module_name=${pj.binary.module_name}`, `--module_path=${modulePath}`, `--napi_build_version=${napi}`,
    ...(nodedir ? [`--nodedir=${nodedir}`] : []),
  ];
  log(`building the addon with node-gyp (napi ${napi}${nodedir ? `, Node headers from ${nodedir}` : ''}) ...`);
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: pkgDir, encoding: 'utf8', timeout: 20 * 60_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim());
    const why = out.find((l) => /error:|gyp ERR! stack Error/.test(l)) ?? out.filter(Boolean).pop() ?? String(r.error);
    throw new Skip(`building the addon failed: ${why.slice(0, 240)}`);
  }
  log(`built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  await fs.writeFile(join(deps, 'voco-tensorflow.json'), JSON.stringify({ ...tf, builtAt: new Date().toISOString() }, null, 2));
}

/** tfjs-node's own installer (downloads libtensorflow 2.9.1 and a prebuilt addon from Google). */
function upstreamInstaller(pkgDir, args) {
  // (it empties deps/ first: only called when what is there does not work anyway)
  const r = spawnSync(process.execPath, ['scripts/install.js', ...args], { cwd: pkgDir, encoding: 'utf8', timeout: 5 * 60_000, maxBuffer: 64 << 20 });
  return r.status === 0;
}

// ---------- main ----------

async function setupCpu() {
  const pkgDir = resolvePackageDir('@tensorflow/tfjs-node');
  if (!pkgDir) throw new Skip('@tensorflow/tfjs-node is not installed (optional dependencies omitted?)');
  const first = verifyAddon('@tensorflow/tfjs-node');
  if (first.ok) {
    log(`tensorflow backend ready (@tensorflow/tfjs-node already loads; checked in ${secs()})`);
    return;
  }
  if (platform() !== 'linux' || arch() !== 'x64') {
    log(`@tensorflow/tfjs-node does not load (${first.why}); trying its own installer for ${platform()}-${arch()} ...`);
    if (upstreamInstaller(pkgDir, []) && verifyAddon('@tensorflow/tfjs-node').ok) {
      log(`tensorflow backend ready (tfjs-node's own libtensorflow, ${secs()})`);
      return;
    }
    throw new Skip(`the TensorFlow wheel path supports linux-x64 only and tfjs-node's own download failed on ${platform()}-${arch()}`);
  }
  const state = /can not be found/.test(first.why) ? 'its native addon is not built yet' : `its addon does not load: ${first.why}`;
  log(`@tensorflow/tfjs-node: ${state}; building it against a TensorFlow wheel`);
  const cache = cacheHome();
  let wheel;
  try {
    wheel = await findWheel(cache);
  } catch (err) {
    if (!(err instanceof Skip)) throw err;
    log(`${err.message}; trying tfjs-node's own download of libtensorflow 2.9.1 ...`);
    if (upstreamInstaller(pkgDir, []) && verifyAddon('@tensorflow/tfjs-node').ok) {
      log(`tensorflow backend ready (tfjs-node's own libtensorflow 2.9.1, ${secs()})`);
      return;
    }
    throw new Skip(`${err.message}, and tfjs-node's own download (storage.googleapis.com) failed too`);
  }
  const tf = await extractWheel(wheel, cache, join(pkgDir, 'binding'));
  await buildAddon(pkgDir, tf);
  const check = verifyAddon('@tensorflow/tfjs-node');
  if (!check.ok) throw new Skip(`the built addon does not work: ${check.why}`);
  log(`tensorflow backend ready (TensorFlow ${tf.version} C library from ${tf.wheel}; conv3d checked; ${secs()} in all)`);
}

/** tfjs-node-gpu (CUDA 11.2 / cuDNN 8.1 builds of libtensorflow 2.9.1): only where a CUDA device is. */
function setupGpu() {
  const pkgDir = resolvePackageDir('@tensorflow/tfjs-node-gpu');
  if (!pkgDir || !existsSync('/proc/driver/nvidia/version')) return;
  if (verifyAddon('@tensorflow/tfjs-node-gpu').ok) return log('tensorflow-gpu backend ready (@tensorflow/tfjs-node-gpu loads)');
  if (upstreamInstaller(pkgDir, ['gpu', 'download']) && verifyAddon('@tensorflow/tfjs-node-gpu').ok) {
    return log('tensorflow-gpu backend ready (libtensorflow 2.9.1 GPU downloaded by tfjs-node-gpu)');
  }
  log('a CUDA device is present but @tensorflow/tfjs-node-gpu could not be set up (its libtensorflow 2.9.1 GPU download failed; it needs CUDA 11.2 and cuDNN 8.1); the tensorflow-gpu backend is unavailable');
}

async function main() {
  if (process.env.VOCO_SKIP_TENSORFLOW === '1') {
    log(`skipping the TensorFlow setup (VOCO_SKIP_TENSORFLOW=1); ${FALLBACK}`);
    return;
  }
  try {
    await setupCpu();
  } catch (err) {
    const why = err instanceof Skip ? err.message : `unexpected error: ${err?.stack?.split('\n').slice(0, 2).join(' ') ?? err}`;
    console.log(`${PREFIX} the tensorflow backend is not available: ${why}; ${FALLBACK}`);
  }
  try {
    setupGpu();
  } catch {}
}

await main();
process.exitCode = 0;
