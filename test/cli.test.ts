import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { info, Model } from '../lib';
import { main } from '../lib/cli';
import { cycleOf } from '../lib/cli/options';
import { cliPath, root } from './helpers';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI's main() in this process, capturing its output (cheaper than a process). */
async function recaInProcess(...args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    stdout += `${a.join(' ')}\n`;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

/** Runs `node dist/cli.js ...args` (asynchronously, so several can run at once). */
function reca(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args], { cwd: root, encoding: 'utf8', timeout: 60000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function expectInfoShape(i: ReturnType<typeof info>): void {
  expect(typeof i.version).toBe('string');
  expect(i.version).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  expect(i.napiVersion).toBeGreaterThanOrEqual(8);
  expect(['cpu', 'cuda']).toContain(i.backend);
  expect(['scalar', 'avx2', 'avx512']).toContain(i.cpu.isa);
  expect(['scalar', 'avx2', 'avx512']).toContain(i.cpu.detectedIsa);
  expect(i.cpu.isaWarning === null || typeof i.cpu.isaWarning === 'string').toBe(true);
  expect(typeof i.cpu.avx512Bf16).toBe('boolean');
  expect(i.cpu.bf16Matmul).toBe(i.cpu.bf16MatmulReason === null);
  if (i.cpu.bf16Matmul) expect(i.cpu.avx512Bf16 && i.cpu.isa === 'avx512').toBe(true);
  expect(Number.isInteger(i.cpu.threads) && i.cpu.threads >= 1).toBe(true);
  expect(Number.isInteger(i.cpu.hardwareThreads) && i.cpu.hardwareThreads >= 1).toBe(true);
  expect(typeof i.cuda.compiled).toBe('boolean');
  expect(typeof i.cuda.architectures).toBe('string');
  expect(typeof i.cuda.runtimeVersion).toBe('number');
  expect(typeof i.cuda.driverVersion).toBe('number');
  expect(Array.isArray(i.cuda.devices)).toBe(true);
  for (const d of i.cuda.devices) {
    expect(typeof d.index).toBe('number');
    expect(typeof d.name).toBe('string');
    expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(typeof d.multiprocessors).toBe('number');
    expect(typeof d.totalMemory).toBe('number');
  }
  expect(typeof i.cuda.reason).toBe('string');
  if (i.cuda.devices.length === 0) expect(i.cuda.reason.length).toBeGreaterThan(0);
  const mpi = i.distributed.mpi;
  expect(typeof mpi.available).toBe('boolean');
  // Either a library was found or the reason it was not is given.
  expect(mpi.available ? mpi.library.length : mpi.error.length).toBeGreaterThan(0);
  expect(mpi.size >= 1 && mpi.rank >= 0 && mpi.rank < mpi.size).toBe(true);
  const nccl = i.distributed.nccl;
  expect(nccl.available ? nccl.library.length : nccl.error.length).toBeGreaterThan(0);
}

describe('info', () => {
  test('info() has every field, typed', () => {
    expectInfoShape(info());
  });

  test('`reca info --json` prints the same fields', async () => {
    const r = await reca('info', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectInfoShape(JSON.parse(r.stdout));
  });

  test('the bin runs as a program (shebang + executable bit), as `npx reca` runs it in a checkout', async () => {
    const bin = path.join(root, JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).bin.reca);
    const r = await new Promise<Run>((resolve) => {
      execFile(bin, ['info', '--json'], (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
      );
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectInfoShape(JSON.parse(r.stdout));
  });

  test('`reca info` prints a table', async () => {
    const r = await recaInProcess('info');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^reca-engine \d+\.\d+\.\d+/);
    expect(r.stdout).toMatch(/isa (scalar|avx2|avx512)/);
    expect(r.stdout).toMatch(/^cuda /m);
  });
});

describe('cli', () => {
  test('an unknown command exits 2 with one line on stderr, no stack', async () => {
    const r = await reca('nosuch');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^reca: unknown command 'nosuch'/);
    expect(r.stderr).not.toMatch(/\bat /);
  });

  test('unknown flags and bad values exit 2 with one line', async () => {
    const cases = [['info', '--nope'], ['bench', '--suite', 'nope'], ['bench', '--threads', 'x'], ['--nope'], ['bench', '--json'],
      ['train', '--cycle', '2,1,1,1'], ['train', '--cycle', '0,2'], ['demo', '--cycle', '2,x']];
    const runs = [];
    for (const args of cases) runs.push(await recaInProcess(...args));
    for (const [i, r] of runs.entries()) {
      expect([cases[i].join(' '), r.code]).toEqual([cases[i].join(' '), 2]);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^reca: /);
    }
  });

  test('--cycle takes R,I or R,I,T', () => {
    expect(cycleOf({ cycle: '2,2' })).toEqual([2, 2]);
    expect(cycleOf({ cycle: '2,1,1' })).toEqual([2, 1, 1]);
    expect(cycleOf({})).toBeUndefined();
    for (const bad of ['2', '2,1,1,1', '0,2', '2,-1', 'a,b']) expect(() => cycleOf({ cycle: bad })).toThrow(/--cycle takes R,I or R,I,T/);
  });

  test('reca train --freeze trains only the groups left out, --cond-grad-scale scales what reaches them; unknown groups are refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-freeze-'));
    try {
      const out = path.join(dir, 'conn-only.safetensors');
      const base = path.join(root, 'models', 'tiny-mask.safetensors');
      const connOnly = (scale: string, file: string) =>
        recaInProcess('train', '--model', base, '--freeze', 'und,vq,gen', '--cond-grad-scale', scale, '--cycle', '1,0', '--steps', '2', '--batch', '2', '--threads', '1', '--out', file);
      expect((await connOnly('1', out)).code).toBe(0);
      using before = await Model.load(base);
      using after = await Model.load(out);
      const changed = async (m: Model, name: string) => {
        const a = (await before.parameter(name)).toArray(), b = (await m.parameter(name)).toArray();
        return a.some((v, i) => v !== b[i]);
      };
      for (const name of before.parameterNames()) {
        if (name.startsWith('gen.') || name.startsWith('und.') || name.startsWith('vq.')) expect([name, await changed(after, name)]).toEqual([name, false]);
      }
      expect(await changed(after, 'conn.fc1.weight')).toBe(true);
      expect(await changed(after, 'conn.ln.weight')).toBe(true);
      // Scale 0: the reca steps send the connector no gradient, so its undecayed LayerNorm stays put.
      const zero = path.join(dir, 'scale-0.safetensors');
      expect((await connOnly('0', zero)).code).toBe(0);
      using unscaled = await Model.load(zero);
      expect(await changed(unscaled, 'conn.ln.weight')).toBe(false);
      const bad = await recaInProcess('train', '--model', base, '--freeze', 'und,bogus', '--steps', '1', '--batch', '2', '--out', path.join(dir, 'x.safetensors'));
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^reca: E_INVALID_ARGUMENT: freeze: unknown group 'bogus'/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--help for each command', async () => {
    const runs = [];
    for (const args of [['--help'], ['info', '--help'], ['bench', '--help']]) runs.push(await recaInProcess(...args));
    for (const r of runs) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: reca/);
    }
    expect((await recaInProcess('--version')).stdout.trim()).toBe(info().version);
    const none = await recaInProcess();
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^Usage: reca/);
  });

  test('an engine error exits 1 as `reca: E_CODE: message`', async () => {
    const r = await recaInProcess('bench', '--threads', '1000', '--filter', 'nothing-matches');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^reca: E_INVALID_ARGUMENT: /);
  });

  test('`reca bench --suite kernels --json FILE` writes records with the required fields', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-bench-'));
    const file = path.join(dir, 'bench.json');
    const r = await reca('bench', '--suite', 'kernels', '--filter', 'gelu.fwd', '--min-seconds', '0.01', '--json', file);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/name\s+shape\s+isa\s+threads\s+ms\s+GFLOP\/s\s+GB\/s\s+peer GFLOP\/s\s+ratio/);
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(doc.machine).toEqual(
      expect.objectContaining({
        cpuModel: expect.any(String),
        cores: expect.any(Number),
        isa: expect.stringMatching(/^(scalar|avx2|avx512)$/),
        node: process.version,
        os: expect.any(String),
      }),
    );
    expect(doc.records.length).toBeGreaterThanOrEqual(1);
    for (const rec of doc.records) {
      expect(rec.name).toContain('gelu.fwd');
      expect(rec.shape.every((d: unknown) => Number.isInteger(d))).toBe(true);
      expect(typeof rec.isa).toBe('string');
      expect(rec.threads).toBeGreaterThanOrEqual(1);
      for (const k of ['seconds', 'gflops', 'gbps']) expect(typeof rec[k]).toBe('number');
      if (rec.peer !== undefined) {
        expect(typeof rec.peer.name).toBe('string');
        expect(typeof rec.peer.gflops).toBe('number');
        expect(typeof rec.ratio).toBe('number');
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
