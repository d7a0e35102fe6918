// Data parallelism over MPI: runs of the tiny preset on 2 and 3 ranks (3 is
// oversubscribed on small machines) must end with the same checkpoint bytes as
// one process with the same global batch and shard count, also after a save on
// 2 ranks resumed on 3. The oracle is the single process's file; the last check
// of each mode shows that the comparison sees a different summation order.
import { execFile, execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { cliPath, root } from './helpers';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function findMpirun(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const MPIRUN = findMpirun();
// Root in CI containers; more ranks than cores; shared memory and loopback only.
const MPI_ENV = {
  ...process.env,
  OMPI_ALLOW_RUN_AS_ROOT: '1',
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  OMPI_MCA_rmaps_base_oversubscribe: '1',
  OMPI_MCA_btl: 'self,vader',
  OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
};

function spawn(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: root, encoding: 'utf8', timeout: 120000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

async function ok(run: Promise<Run>): Promise<Run> {
  const r = await run;
  if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** One process, MPI off. */
const single = (...args: string[]): Promise<Run> => ok(spawn(process.execPath, [cliPath, ...args, '--distributed', 'off']));
/** `mpirun -np n node ...`. */
const mpirun = (n: number, ...args: string[]): Promise<Run> => ok(spawn(MPIRUN!, ['-np', String(n), process.execPath, ...args], MPI_ENV));
/** `mpirun -np n reca ...`. */
const ranks = (n: number, ...args: string[]): Promise<Run> => mpirun(n, cliPath, ...args);

const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
/** The tensors of a safetensors file (what follows its JSON header): parameters, moments, EMA. */
function tensorSha(file: string): string {
  const buf = fs.readFileSync(file);
  return createHash('sha256').update(buf.subarray(8 + Number(buf.readBigUInt64LE(0)))).digest('hex');
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-dp-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const at = (name: string): string => path.join(dir, name);

test('without OpenMPI, distributed mpi is E_DEVICE saying what to install; off trains as before; NCCL absent is reported', async () => {
  const script = `
    const { Model, Trainer } = require('./dist');
    (async () => {
      const model = await Model.create({ preset: 'tiny' });
      const { info } = require('./dist');
      console.log('nccl', JSON.stringify(info().distributed.nccl));
      const plain = new Trainer(model, { distributed: 'off' });
      console.log('ranks', plain.ranks, plain.communicator);
      plain.dispose();
      try { new Trainer(model, { distributed: 'mpi' }); console.log('no error'); }
      catch (e) { console.log(e.code, e.message); }
    })();`;
  const r = await ok(spawn(process.execPath, ['-e', script], { ...process.env, RECA_MPI_LIB: '/nonexistent/libmpi.so.40', RECA_NCCL_LIB: '/nonexistent/libnccl.so.2' }));
  expect(r.stdout).toMatch(/nccl \{"available":false,"library":"","version":0,"error":"no NCCL library \(\/nonexistent\/libnccl.so.2/);
  expect(r.stdout).toContain('ranks 1 null');
  expect(r.stdout).toMatch(/E_DEVICE distributed training needs OpenMPI.*apt-get install openmpi-bin/);
});

if (!MPIRUN) {
  // CI installs OpenMPI (openmpi-bin), so these run there.
  process.stdout.write('distributed.test.ts: mpirun not found, the multi-rank checks are skipped (apt-get install openmpi-bin libopenmpi-dev)\n');
}
const withMpi = MPIRUN ? describe : describe.skip;

withMpi('mpirun: N ranks equal one process byte for byte', () => {
  jest.setTimeout(300000);

  test.each([
    ['mask', 'reca'],
    ['ar', 'reca+i2t'],
    ['flow', 'reca+i2t'],
  ])('%s (%s): 2 ranks, 3 ranks, and 2 ranks resumed on 3', async (mode, recipe) => {
    const run = ['train', '--preset', 'tiny', '--mode', mode, '--recipe', recipe, '--steps', '4', '--batch', '6', '--threads', '1'];
    const sharded = [...run, '--shards', '6'];
    await single(...sharded, '--out', at(`${mode}-one.st`));
    await ranks(2, ...sharded, '--out', at(`${mode}-two.st`));
    await ranks(3, ...sharded, '--out', at(`${mode}-three.st`));
    await ranks(2, ...sharded, '--stop-at', '2', '--out', at(`${mode}-half.st`));
    await ranks(3, ...sharded, '--resume', at(`${mode}-half.st`), '--out', at(`${mode}-resumed.st`));
    const one = sha(at(`${mode}-one.st`));
    expect(sha(at(`${mode}-two.st`))).toBe(one);
    expect(sha(at(`${mode}-three.st`))).toBe(one);
    expect(sha(at(`${mode}-resumed.st`))).toBe(one);
    // The same run summed in another order (one shard) ends elsewhere: the
    // comparison above would see a reduction that adds in any other order.
    await single(...run, '--shards', '1', '--out', at(`${mode}-unsharded.st`));
    expect(sha(at(`${mode}-unsharded.st`))).not.toBe(one);
  });

  test('the default shard count is the rank count: 2 ranks equal one process with 2 shards', async () => {
    const run = ['train', '--preset', 'tiny', '--steps', '3', '--batch', '4', '--threads', '1'];
    await single(...run, '--shards', '2', '--out', at('default-one.st'));
    const r = await ranks(2, ...run, '--json', '--out', at('default-two.st'));
    // The headers differ only in the stored option (shards 0: one per rank, against 2).
    expect(tensorSha(at('default-two.st'))).toBe(tensorSha(at('default-one.st')));
    expect(JSON.parse(r.stdout).steps).toBe(3);  // rank 0 alone prints the summary
  });

  test('tokenizer stage with a code restart every step (the restart reads the whole global batch)', async () => {
    const script = path.join(root, 'test', 'distributed', 'tokenizer-run.js');
    const one = await ok(spawn(process.execPath, [script, at('tok-one.st'), 'off']));
    const three = await mpirun(3, script, at('tok-three.st'), 'mpi');
    const a = JSON.parse(one.stdout);
    const b = JSON.parse(three.stdout);
    expect(a.some((r: { codesRestarted: number }) => r.codesRestarted > 0)).toBe(true);
    expect(b.map((r: { ranks: number }) => r.ranks)).toEqual([3, 3, 3]);
    // Loss, grad norm and code statistics are reduced in the same fixed order.
    expect(b.map((r: Record<string, number>) => ({ ...r, ranks: 1 }))).toEqual(a);
    expect(sha(at('tok-three.st'))).toBe(sha(at('tok-one.st')));
  });

  test('ranks that disagree (another seed on rank 1) fail together with E_INVALID_ARGUMENT', async () => {
    const run = (seed: string) => [process.execPath, cliPath, 'train', '--preset', 'tiny', '--steps', '2', '--batch', '2', '--threads', '1', '--seed', seed, '--out', at('disagree.st')];
    const r = await spawn(MPIRUN!, ['-np', '1', ...run('0'), ':', '-np', '1', ...run('1')], MPI_ENV);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('E_INVALID_ARGUMENT: rank 1 has other trainer options than rank 0');
    expect(fs.existsSync(at('disagree.st'))).toBe(false);
  });

  test('pretrain on 2 ranks equals one process (tokenizer, then t2i + i2t)', async () => {
    const run = ['pretrain', '--preset', 'tiny', '--mode', 'mask', '--tokenizer-steps', '2', '--steps', '2', '--batch', '4', '--shards', '4', '--threads', '1'];
    await single(...run, '--out', at('pre-one.st'));
    await ranks(2, ...run, '--out', at('pre-two.st'));
    expect(sha(at('pre-two.st'))).toBe(sha(at('pre-one.st')));
  });
});
