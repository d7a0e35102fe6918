#!/usr/bin/env node
// Builds reca.node through node-gyp without downloading anything.
//
//   node native/addon/install.js               `npm install`: node-gyp-build (a prebuilt
//                                              binary that loads wins; else node-gyp rebuild)
//   node native/addon/install.js --rebuild     always node-gyp rebuild
//   node native/addon/install.js --prebuildify prebuildify --napi --strip -> prebuilds/
//   node native/addon/install.js --prebuild-cuda
//                                              cmake-js (CUDA compiled in when nvcc is
//                                              found) into build-cuda/, stripped copy ->
//                                              prebuilds-cuda/<platform>-<arch>/reca.node
//
// node-gyp fetches Node's headers from the internet unless it is given a
// --nodedir. When the running Node has its headers installed beside it (the
// Linux packages and the official tarballs do: <prefix>/include/node), point
// node-gyp there through npm_config_nodedir; an explicit nodedir wins.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', '..');

function localNodeDir() {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  try {
    const h = fs.readFileSync(path.join(prefix, 'include', 'node', 'node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => (h.match(new RegExp(`define NODE_${k}_VERSION (\\d+)`)) || [])[1]);
    if (`v${v.join('.')}` === process.version &&
        fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) {
      return prefix;
    }
  } catch (_) { /* no local headers */ }
  return null;
}

function resolveBin(pkg, bin) {
  try {
    const dir = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [root] }));
    const meta = require(path.join(dir, 'package.json'));
    const rel = typeof meta.bin === 'string' ? meta.bin : meta.bin[bin || pkg];
    return [process.execPath, path.join(dir, rel)];
  } catch (_) {
    return [pkg];  // on PATH (npm puts its own node-gyp there for install scripts)
  }
}

const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const nodedir = localNodeDir();
  if (nodedir) env.npm_config_nodedir = nodedir;
}

// Compile on every core unless told otherwise (node-gyp's default is one job).
if (!env.JOBS && !env.npm_config_jobs) env.JOBS = 'max';

function run(cmd) {
  const r = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env, stdio: 'inherit' });
  if (r.error) {
    console.error(`reca-engine: could not run ${cmd.join(' ')}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status === null ? 1 : r.status);
}

const mode = process.argv[2] || '';

// The CUDA variant: a separate artifact beside the CPU prebuild. It has its own
// build folder so it never replaces the node-gyp build in build/.
if (mode === '--prebuild-cuda') {
  run([...resolveBin('cmake-js'), 'rebuild', '--out', 'build-cuda']);
  const built = path.join(root, 'build-cuda', 'Release', 'reca.node');
  const dir = path.join(root, 'prebuilds-cuda', `${process.platform}-${process.arch}`);
  const dest = path.join(dir, 'reca.node');
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(built, dest);
  const strip = spawnSync('strip', ['--strip-unneeded', dest], { stdio: 'inherit' });
  if (strip.error || strip.status !== 0) console.error('install.js: strip failed; the artifact keeps its symbols');
  const probe = spawnSync(process.execPath, ['-e',
    `const a = require(${JSON.stringify(dest)}); const c = a.info().cuda;` +
    'console.log(JSON.stringify({ compiled: c.compiled, architectures: c.architectures, devices: c.devices.length, reason: c.reason }))',
  ], { encoding: 'utf8' });
  const mb = (fs.statSync(dest).size / 1048576).toFixed(1);
  console.log(`${path.relative(root, dest)}: ${mb} MiB, cuda ${(probe.stdout || probe.stderr).trim()}`);
  process.exit(0);
}

let cmd;
if (mode === '') cmd = resolveBin('node-gyp-build');
else if (mode === '--rebuild') cmd = [...resolveBin('node-gyp'), 'rebuild'];
else if (mode === '--prebuildify') cmd = [...resolveBin('prebuildify'), '--napi', '--strip'];
else {
  console.error(`install.js: unknown mode ${mode} (use --rebuild, --prebuildify or --prebuild-cuda)`);
  process.exit(2);
}
const r = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env, stdio: 'inherit' });
if (r.error) {
  console.error(`reca-engine: could not run ${cmd.join(' ')}: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status === null ? 1 : r.status);
