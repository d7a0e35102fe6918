/** Process-wide engine state: loading the addon, versions, threads, SIMD level, native memory. */
import { invalidArgument } from './errors';
import { addon, load as loadAddon, type CudaArtifactStatus, type LoadOptions } from './loader';
import type { SchemaDocument } from './generated/schema';
import type { Isa, NativeInfo } from './native';

export interface EngineInfo extends Omit<NativeInfo, 'schemaJson'> {
  /** Every option table of the engine with its defaults (lib/generated/schema.ts is generated from it). */
  schema: SchemaDocument;
  /** The backend in use. */
  backend: 'cpu' | 'cuda';
  /** The reca.node file that loaded. */
  addonPath: string;
  /** The CUDA variant (prebuilds-cuda/): whether it is in use, or why not; null when not considered. */
  cudaArtifact: CudaArtifactStatus | null;
}

/**
 * Loads the native addon now (it otherwise loads on first use) and picks the
 * backend: option `backend`, else env RECA_BACKEND, else `auto`.
 */
export function load(options: LoadOptions = {}): { backend: 'cpu' | 'cuda'; addonPath: string } {
  const l = loadAddon(options);
  return { backend: l.backend, addonPath: l.path };
}

/** Versions, CPU SIMD level and threads, and what CUDA this build and machine offer. */
export function info(): EngineInfo {
  const l = loadAddon();
  const { schemaJson, ...rest } = l.addon.info();
  const schema = JSON.parse(schemaJson) as SchemaDocument;
  return { ...rest, schema, backend: l.backend, addonPath: l.path, cudaArtifact: l.cudaArtifact };
}

/** Threads of the CPU kernels (process-wide, shared by every Worker). Results do not depend on it. */
export function setThreads(n: number): void {
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw invalidArgument(`thread count must be an integer, got ${String(n)}`);
  }
  addon().setThreads(n);
}

export function getThreads(): number {
  return addon().getThreads();
}

/** Lowers (or restores) the SIMD level of the CPU kernels; above info().cpu.detectedIsa is E_INVALID_ARGUMENT. */
export function setIsa(isa: Isa): void {
  if (typeof isa !== 'string') throw invalidArgument(`ISA must be a string, got ${String(isa)}`);
  addon().setIsa(isa);
}

export function getIsa(): Isa {
  return addon().getIsa();
}

export interface MemoryStats {
  /** Host tensors alive in this process (every Worker included). */
  hostTensors: number;
  /** Their bytes. */
  hostBytes: number;
}

/** Native memory held by tensors now: a leak shows up here. */
export function memory(): MemoryStats {
  const s = addon().memoryStats();
  return { hostTensors: s.tensors, hostBytes: s.bytes };
}
