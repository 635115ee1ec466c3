#!/usr/bin/env node
// Build a JavaScript task plugin into a component:
//   node sdk/js/build-plugin.mjs ENTRY.js OUT.wasm [--wit DIR] [--bundle FILE]
// (or `npm run build` in a plugin folder). Install the toolchain once with
// `npm ci` in this folder.
//
// ENTRY is an ES module exporting `run` (usually `export const run =
// task(...)`). esbuild bundles it, everything it imports (relative files,
// npm packages) and this SDK (`import ... from 'taskhost-sdk'`) into one
// module; ComponentizeJS then snapshots it in its SpiderMonkey engine against
// the `task` world of the repository's `wit/` (this folder's `../wit`).
//
// The component is built without WASI stdio: with it, the engine also
// imports wasi:filesystem (which the host links to nothing), and the SDK
// sends console.* to the execution's log instead.
import { mkdtemp, rm, writeFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdkModule = join(here, 'taskhost-sdk.js');

function usage(message) {
  if (message) console.error(`build-plugin: ${message}`);
  console.error('usage: build-plugin.mjs ENTRY.js OUT.wasm [--wit DIR] [--bundle FILE]');
  process.exit(2);
}

const positional = [];
let witPath = join(here, '..', 'wit');
let bundleOut = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--wit' || arg === '--bundle') {
    const value = args[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    if (arg === '--wit') witPath = value;
    else bundleOut = value;
  } else if (arg === '-h' || arg === '--help') {
    usage();
  } else if (arg.startsWith('-')) {
    usage(`unknown option ${arg}`);
  } else {
    positional.push(arg);
  }
}
if (positional.length !== 2) usage();
const [entry, out] = positional.map((p) => resolve(p));
witPath = resolve(witPath);
if (!(await stat(witPath).catch(() => null))) usage(`no WIT at ${witPath} (use --wit DIR)`);

// The toolchain is this folder's dependencies (`npm ci` here, once).
let componentize, build;
try {
  ({ componentize } = await import('@bytecodealliance/componentize-js'));
  ({ build } = await import('esbuild'));
} catch (e) {
  console.error(`build-plugin: ${e.message}`);
  console.error(`build-plugin: install the toolchain first: npm ci --prefix ${here}`);
  process.exit(1);
}

const started = Date.now();

// 1. One ES module: the plugin, its imports and the SDK. The host's
// interfaces stay imports: ComponentizeJS binds them to the world.
const bundled = await build({
  entryPoints: [entry],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  target: 'es2022',
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  external: ['taskhost:*', 'wasi:*'],
  plugins: [
    {
      name: 'taskhost-sdk',
      setup(b) {
        b.onResolve({ filter: /^taskhost-sdk$/ }, () => ({ path: sdkModule }));
      },
    },
  ],
});
const source = bundled.outputFiles[0].text;
if (bundleOut) {
  await mkdir(dirname(resolve(bundleOut)), { recursive: true });
  await writeFile(bundleOut, source);
}

// 2. The component.
const work = await mkdtemp(join(tmpdir(), 'taskhost-js-'));
try {
  const sourcePath = join(work, 'plugin.js');
  await writeFile(sourcePath, source);
  const { component } = await componentize({
    sourcePath,
    witPath,
    worldName: 'task',
    disableFeatures: ['stdio'],
  });
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const mib = (component.length / (1 << 20)).toFixed(1);
  console.error(`build-plugin: wrote ${out} (${mib} MiB) in ${seconds}s`);
} finally {
  await rm(work, { recursive: true, force: true });
}
