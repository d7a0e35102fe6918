/**
 * Finds and loads the native addon (reca.node) and picks the backend.
 *
 * Order: RECA_ADDON_PATH when set (that file only); otherwise node-gyp-build's
 * choice (build/Release, then prebuilds/<platform>-<arch>), then every other
 * candidate file. A failure throws one RecaError E_LOAD that lists each path
 * tried with its error, and the fix.
 *
 * The CUDA variant (prebuilds-cuda/<platform>-<arch>/reca.node, a separate
 * artifact) is tried first only for backend `cuda` or `auto`, and only when a
 * CUDA driver and device node are present on this machine. When it does not
 * load or finds no device, the CPU addon loads as usual and info().loader
 * records why.
 */
import * as fs from 'fs';
import * as path from 'path';

import { RecaError } from './errors';
import type { NativeAddon } from './native';

export type Backend = 'auto' | 'cpu' | 'cuda';
export const BACKENDS: readonly Backend[] = ['auto', 'cpu', 'cuda'];

export interface LoadOptions {
  /** `auto` (default, or env RECA_BACKEND): CUDA when compiled in and a device answers, else CPU. */
  backend?: Backend;
}

export interface CudaArtifactStatus {
  /** prebuilds-cuda/<platform>-<arch>/reca.node */
  path: string;
  /** Whether it is the addon in use. */
  used: boolean;
  /** Why it is not (empty when it is). */
  reason: string;
}

export interface Loaded {
  addon: NativeAddon;
  /** The .node file that loaded. */
  path: string;
  /** The backend in use: `cpu` or `cuda`. */
  backend: 'cpu' | 'cuda';
  /** What became of the CUDA variant; null when it was not considered (RECA_ADDON_PATH, backend `cpu`). */
  cudaArtifact: CudaArtifactStatus | null;
}

/** The package root (holds package.json, build/, prebuilds/). */
export const packageRoot = path.resolve(__dirname, '..');

interface Attempt {
  path: string;
  error: string;
}

let loaded: Loaded | undefined;

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').map((l) => l.trim()).filter(Boolean)[0] ?? 'unknown error';
}

function packageVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

/** Candidate addon files, most preferred first, plus attempts that failed before any require. */
function candidates(): { files: string[]; attempts: Attempt[] } {
  const forced = process.env.RECA_ADDON_PATH;
  if (forced) return { files: [path.resolve(forced)], attempts: [] };

  const files: string[] = [];
  const attempts: Attempt[] = [];
  const tuple = `${process.platform}-${process.arch}`;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    files.push(nodeGypBuild.resolve(packageRoot));
  } catch (e) {
    attempts.push({
      path: path.join(packageRoot, 'prebuilds', tuple),
      error: `no prebuilt binary for ${tuple} (${firstLine(e)})`,
    });
  }
  files.push(path.join(packageRoot, 'build', 'Release', 'reca.node'));
  const prebuildDir = path.join(packageRoot, 'prebuilds', tuple);
  try {
    for (const f of fs.readdirSync(prebuildDir).sort()) {
      if (f.endsWith('.node')) files.push(path.join(prebuildDir, f));
    }
  } catch {
    // no prebuilds for this platform: already reported above, or node-gyp-build found a build
  }
  return { files: [...new Set(files)], attempts };
}

/** The CUDA variant's path for this platform. */
export function cudaArtifactPath(): string {
  return path.join(packageRoot, 'prebuilds-cuda', `${process.platform}-${process.arch}`, 'reca.node');
}

const DRIVER_LIB_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/nvidia/lib64',
  '/usr/local/nvidia/lib',
  '/usr/lib/wsl/lib',
];

let driverAnswer: string | undefined;

/**
 * Empty when a CUDA driver looks usable here, else why not. File checks only
 * (no dlopen): a device node and libcuda.so.1 on the usual or
 * LD_LIBRARY_PATH directories. Asked once per process.
 */
export function cudaDriverAbsence(): string {
  if (driverAnswer !== undefined) return driverAnswer;
  const devices = ['/dev/nvidia0', '/dev/dxg'];  // dxg: WSL2's GPU node
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...DRIVER_LIB_DIRS];
  if (!devices.some((d) => fs.existsSync(d))) {
    driverAnswer = 'no NVIDIA device node (/dev/nvidia0)';
  } else if (!dirs.some((d) => fs.existsSync(path.join(d, 'libcuda.so.1')))) {
    driverAnswer = 'no CUDA driver library (libcuda.so.1)';
  } else {
    driverAnswer = '';
  }
  return driverAnswer;
}

/** Loads and initializes one addon file; throws with the reason when it is not usable. */
function requireOne(file: string): NativeAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addon = require(file) as NativeAddon;
  if (typeof addon?.init !== 'function' || typeof addon?.info !== 'function') {
    throw new Error('not a reca-engine addon (no init/info exports)');
  }
  addon.init(RecaError, packageVersion());
  return addon;
}

/**
 * The CUDA variant when it is present, a driver answers and it finds a device;
 * otherwise null, with the reason in `status`. Never throws.
 */
function tryCudaArtifact(status: CudaArtifactStatus): NativeAddon | null {
  if (!fs.existsSync(status.path)) {
    status.reason = 'not installed';
    return null;
  }
  const absent = cudaDriverAbsence();
  if (absent) {
    status.reason = absent;
    return null;
  }
  try {
    const addon = requireOne(status.path);
    const cuda = addon.info().cuda;
    if (!cuda.compiled) status.reason = 'built without CUDA';
    else if (cuda.devices.length === 0) status.reason = cuda.reason || 'no CUDA device found';
    else {
      status.used = true;
      return addon;
    }
  } catch (e) {
    status.reason = `failed to load: ${firstLine(e)}`;
  }
  return null;
}

function loadError(attempts: Attempt[]): RecaError {
  const where = `${process.platform}-${process.arch}, Node ${process.version}, N-API ${process.versions.napi}`;
  const forced = process.env.RECA_ADDON_PATH
    ? '\n(RECA_ADDON_PATH is set: only that file was tried; unset it to search the package.)'
    : '';
  return new RecaError(
    'E_LOAD',
    `reca-engine could not load its native addon (${where}).\n` +
      `Tried:\n${attempts.map((a) => `  - ${a.path}: ${a.error}`).join('\n')}${forced}\n` +
      'Fix: run `npm rebuild reca-engine` to build it from source (needs python3, make and a ' +
      'C++ compiler). If npm skipped its install script, approve it first with ' +
      '`npm install-scripts approve reca-engine`, then run `npm rebuild reca-engine`.',
  );
}

function requireAddon(): { addon: NativeAddon; path: string } {
  const { files, attempts } = candidates();
  for (const file of files) {
    if (!fs.existsSync(file)) {
      attempts.push({ path: file, error: 'file not found' });
      continue;
    }
    try {
      return { addon: requireOne(file), path: file };
    } catch (e) {
      attempts.push({ path: file, error: firstLine(e) });
    }
  }
  throw loadError(attempts);
}

function checkBackendName(requested: Backend): void {
  if (!BACKENDS.includes(requested)) {
    throw new RecaError(
      'E_INVALID_ARGUMENT',
      `backend must be one of ${BACKENDS.join(', ')} (option backend or env RECA_BACKEND), got '${requested}'`,
    );
  }
}

function pickBackend(addon: NativeAddon, requested: Backend, artifact: CudaArtifactStatus | null): 'cpu' | 'cuda' {
  checkBackendName(requested);
  if (requested === 'cpu') return 'cpu';
  const cuda = addon.info().cuda;
  const usable = cuda.compiled && cuda.devices.length > 0;
  if (requested === 'cuda' && !usable) {
    const variant = artifact && !artifact.used && artifact.reason !== 'not installed'
      ? ` (CUDA variant ${artifact.path}: ${artifact.reason})`
      : '';
    throw new RecaError(
      'E_DEVICE',
      `backend 'cuda' was requested but is not available: ${cuda.reason || 'no CUDA device found'}${variant}`,
    );
  }
  return usable ? 'cuda' : 'cpu';
}

/**
 * Loads the addon once (later calls return the same one). Passing a backend
 * after the first load re-checks it against what loaded.
 */
export function load(options: LoadOptions = {}): Loaded {
  const requested = (options.backend ?? process.env.RECA_BACKEND ?? 'auto') as Backend;
  if (!loaded) {
    checkBackendName(requested);
    let artifact: CudaArtifactStatus | null = null;
    let chosen: { addon: NativeAddon; path: string } | null = null;
    if (!process.env.RECA_ADDON_PATH && requested !== 'cpu') {
      artifact = { path: cudaArtifactPath(), used: false, reason: '' };
      const cudaAddon = tryCudaArtifact(artifact);
      if (cudaAddon) chosen = { addon: cudaAddon, path: artifact.path };
    }
    chosen ??= requireAddon();
    loaded = {
      addon: chosen.addon,
      path: chosen.path,
      backend: pickBackend(chosen.addon, requested, artifact),
      cudaArtifact: artifact,
    };
  } else if (options.backend !== undefined) {
    loaded.backend = pickBackend(loaded.addon, requested, loaded.cudaArtifact);
  }
  return loaded;
}

/** The loaded addon (loading it with the defaults on first use). */
export function addon(): NativeAddon {
  return (loaded ?? load()).addon;
}
