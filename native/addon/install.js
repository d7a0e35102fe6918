#!/usr/bin/env node
// Builds reca.node through node-gyp without downloading anything.
//
//   node native/addon/install.js               `npm install`: node-gyp-build (a prebuilt
//                                              binary that loads wins; else node-gyp rebuild)
//   node native/addon/install.js --rebuild     always node-gyp rebuild
//   node native/addon/install.js --prebuildify prebuildify --napi --strip -> prebuilds/
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

const mode = process.argv[2] || '';
let cmd;
if (mode === '') cmd = resolveBin('node-gyp-build');
else if (mode === '--rebuild') cmd = [...resolveBin('node-gyp'), 'rebuild'];
else if (mode === '--prebuildify') cmd = [...resolveBin('prebuildify'), '--napi', '--strip'];
else {
  console.error(`install.js: unknown mode ${mode} (use --rebuild or --prebuildify)`);
  process.exit(2);
}
const r = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env, stdio: 'inherit' });
if (r.error) {
  console.error(`reca-engine: could not run ${cmd.join(' ')}: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status === null ? 1 : r.status);
