// Crash consistency of Model.save: a child process saving in a loop is killed
// with SIGKILL at random moments; the file at the path must always be one of
// the two complete checkpoints, and the next successful save must leave no
// temporary behind. Then write/fsync failures injected with an LD_PRELOAD shim
// (ENOSPC, EIO) must give a typed E_IO and keep the old file.
import { execFile, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model } from '../lib';
import { rng, root } from './helpers';

const dist = path.join(root, 'dist');

/** The child: two models, saved alternately to `target` until killed. */
const saverScript = (preset: string, target: string) => `
  const { Model } = require(${JSON.stringify(dist)});
  (async () => {
    const a = await Model.create({ preset: ${JSON.stringify(preset)}, seed: 1 });
    const b = await Model.create({ preset: ${JSON.stringify(preset)}, seed: 2 });
    process.stdout.write('ready\\n');
    for (let i = 0; ; i++) await (i % 2 ? a : b).save(${JSON.stringify(target)});
  })();
`;

function temps(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
}

/** Starts a saver, kills it `delayMs` after it is ready; resolves when it is gone. */
function killDuringSaves(preset: string, target: string, delayMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', saverScript(preset, target)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), delayMs));
    child.on('exit', (code, signal) =>
      signal === 'SIGKILL' ? resolve() : reject(new Error(`saver exited ${code}: ${stderr}`)),
    );
  });
}

describe('save under kill -9 and I/O errors', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-crash-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  // tiny: 38 kills, small (~20 MB files, saves of tens of ms): 12 kills.
  for (const [preset, kills, maxDelayMs] of [
    ['tiny', 38, 60],
    ['small', 12, 400],
  ] as const) {
    test(`${preset}: after each kill the file is the old or the new checkpoint; the next save removes the temp`, async () => {
      const dir = fs.mkdtempSync(path.join(tmp, `${preset}-`));
      const target = path.join(dir, 'model.safetensors');
      const refs: Buffer[] = [];
      for (const seed of [1, 2]) {
        using m = await Model.create({ preset, seed });
        const ref = path.join(tmp, `${preset}-${seed}.ref`);
        await m.save(ref);
        refs.push(fs.readFileSync(ref));
      }
      using a = await Model.create({ preset, seed: 1 });
      await a.save(target);
      const rand = rng(preset === 'tiny' ? 11 : 12);
      let leftTemp = 0;
      for (let k = 0; k < kills; k++) {
        await killDuringSaves(preset, target, Math.floor(((rand() + 1) / 2) * maxDelayMs));
        const bytes = fs.readFileSync(target);
        expect(bytes.equals(refs[0]) || bytes.equals(refs[1])).toBe(true);
        using loaded = await Model.load(target);
        expect(loaded.parameterCount).toBe(a.parameterCount);
        if (temps(dir).length > 0) leftTemp++;
        await a.save(target);
        expect(temps(dir)).toEqual([]);
      }
      // Kills must land inside saves for the test to mean anything.
      expect(leftTemp).toBeGreaterThan(kills / 5);
    }, 120000); // ~20 s (tiny) and ~30 s (small) on an idle 2-core machine; room for a loaded one
  }

  test('ENOSPC and EIO during save: E_IO, the old file intact, no temp left', async () => {
    const shimSrc = path.join(tmp, 'shim.c');
    const shim = path.join(tmp, 'shim.so');
    // Fails write() or fsync() on the save's temporary (a path with ".tmp-") with
    // the errno RECA_SHIM_FAIL names once RECA_SHIM_AFTER bytes were written.
    fs.writeFileSync(
      shimSrc,
      `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static long written;
static int is_temp(int fd) {
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return strstr(target, ".tmp-") != NULL;
}
static int injected(const char* op, int fd) {
  const char* spec = getenv("RECA_SHIM_FAIL");  /* "write:ENOSPC" | "fsync:EIO" */
  if (!spec || strncmp(spec, op, strlen(op)) != 0 || !is_temp(fd)) return 0;
  const char* after = getenv("RECA_SHIM_AFTER");
  if (after && written < atol(after)) return 0;
  return strstr(spec, "ENOSPC") ? ENOSPC : EIO;
}
ssize_t write(int fd, const void* buf, size_t n) {
  static ssize_t (*real)(int, const void*, size_t);
  if (!real) real = (ssize_t (*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  int err = injected("write", fd);
  if (err) { errno = err; return -1; }
  /* Like a filling disk: a short write up to the limit, then the error. */
  const char* spec = getenv("RECA_SHIM_FAIL");
  const char* after = spec && strncmp(spec, "write", 5) == 0 ? getenv("RECA_SHIM_AFTER") : NULL;
  if (after && is_temp(fd) && written + (long)n > atol(after)) n = (size_t)(atol(after) - written);
  ssize_t w = real(fd, buf, n);
  if (w > 0 && is_temp(fd)) written += w;
  return w;
}
int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  int err = injected("fsync", fd);
  if (err) { errno = err; return -1; }
  return real(fd);
}
`,
    );
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', shim, shimSrc, '-ldl']);

    const dir = fs.mkdtempSync(path.join(tmp, 'io-'));
    const target = path.join(dir, 'model.safetensors');
    {
      using a = await Model.create({ preset: 'tiny', seed: 1 });
      await a.save(target);
    }
    const old = fs.readFileSync(target);
    const script = `
      const { Model } = require(${JSON.stringify(dist)});
      (async () => {
        const m = await Model.create({ preset: 'tiny', seed: 2 });
        try { await m.save(${JSON.stringify(target)}); console.log(JSON.stringify({ saved: true })); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
      })();
    `;
    const cases = [
      { fail: 'write:ENOSPC', after: '4096', message: 'No space left on device' },
      { fail: 'write:EIO', after: '0', message: 'Input/output error' },
      { fail: 'fsync:EIO', after: '0', message: 'Input/output error' },
    ];
    for (const c of cases) {
      const out = await new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          ['-e', script],
          {
            env: { ...process.env, LD_PRELOAD: shim, RECA_SHIM_FAIL: c.fail, RECA_SHIM_AFTER: c.after },
            encoding: 'utf8',
            timeout: 30000,
          },
          (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
        ),
      );
      const r = JSON.parse(out.trim().split('\n').pop()!);
      expect({ case: c.fail, code: r.code }).toEqual({ case: c.fail, code: 'E_IO' });
      expect(r.message).toContain(c.message);
      expect(fs.readFileSync(target).equals(old)).toBe(true);
      expect(temps(dir)).toEqual([]);
    }
  }, 60000);
});
