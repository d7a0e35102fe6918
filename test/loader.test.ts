import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { info, load } from '../lib';
import { expectRecaError, root } from './helpers';

function runNode(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

describe('loader', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-loader-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('a load failure is one E_LOAD that lists every path tried and the fix', async () => {
    // 1. RECA_ADDON_PATH at a file that is not a shared library.
    const garbage = path.join(tmp, 'garbage.node');
    fs.writeFileSync(garbage, 'this is not an ELF file\n');
    // 2. A copy of the package with no build and no prebuilds.
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare);
    fs.cpSync(path.join(root, 'dist'), path.join(bare, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(bare, 'package.json'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(bare, 'node_modules'));

    const script = `
      const report = (e) => ({ name: e.name, code: e.code, message: e.message });
      const out = {};
      try { require(${JSON.stringify(path.join(bare, 'dist'))}).info(); out.bare = 'loaded'; } catch (e) { out.bare = report(e); }
      process.env.RECA_ADDON_PATH = ${JSON.stringify(garbage)};
      try { require(${JSON.stringify(path.join(root, 'dist'))}).info(); out.forced = 'loaded'; } catch (e) { out.forced = report(e); }
      console.log(JSON.stringify(out));`;
    const r = await runNode(script);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);

    expect(out.forced.name).toBe('RecaError');
    expect(out.forced.code).toBe('E_LOAD');
    expect(out.forced.message).toContain(garbage);
    expect(out.forced.message).toMatch(/RECA_ADDON_PATH/);

    expect(out.bare.code).toBe('E_LOAD');
    expect(out.bare.message).toContain(path.join(bare, 'build', 'Release', 'reca.node'));
    expect(out.bare.message).toContain(path.join(bare, 'prebuilds', `${process.platform}-${process.arch}`));
    for (const m of [out.forced.message, out.bare.message]) {
      expect(m).toContain('npm rebuild reca-engine');
      expect(m).toContain('npm install-scripts approve reca-engine');
      expect(m).toMatch(/python3, make and a C\+\+ compiler/);
    }
  });

  test('the CUDA variant is skipped for backend cpu, and a broken one never takes the CPU addon down', async () => {
    // A copy of the package: the CPU addon in build/Release, garbage as the CUDA variant.
    const pkg = path.join(tmp, 'with-cuda-variant');
    fs.mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true });
    fs.cpSync(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
    fs.copyFileSync(info().addonPath, path.join(pkg, 'build', 'Release', 'reca.node'));
    const variant = path.join(pkg, 'prebuilds-cuda', `${process.platform}-${process.arch}`, 'reca.node');
    fs.mkdirSync(path.dirname(variant), { recursive: true });
    fs.writeFileSync(variant, 'not a shared library\n');

    const script = `const i = require(${JSON.stringify(path.join(pkg, 'dist'))}).info();
      console.log(JSON.stringify({ addonPath: i.addonPath, backend: i.backend, cudaArtifact: i.cudaArtifact }));`;
    const env = { RECA_ADDON_PATH: '' };
    const auto = await runNode(script, { ...env, RECA_BACKEND: 'auto' });
    expect(auto.code).toBe(0);
    const a = JSON.parse(auto.stdout);
    expect(a.addonPath).toBe(path.join(pkg, 'build', 'Release', 'reca.node'));
    expect(a.backend).toBe('cpu');
    expect(a.cudaArtifact.path).toBe(variant);
    expect(a.cudaArtifact.used).toBe(false);
    // No driver here: skipped without loading it; with one: it failed to load.
    expect(a.cudaArtifact.reason).toMatch(/^(no NVIDIA device node|no CUDA driver library|failed to load: )/);

    const cpu = await runNode(script, { ...env, RECA_BACKEND: 'cpu' });
    expect(cpu.code).toBe(0);
    expect(JSON.parse(cpu.stdout).cudaArtifact).toBeNull();
  });

  test('backend: cuda without CUDA is E_DEVICE with the reason; unknown names are E_INVALID_ARGUMENT', async () => {
    const cuda = info().cuda;
    if (cuda.compiled && cuda.devices.length > 0) {
      expect(load({ backend: 'cuda' }).backend).toBe('cuda');
    } else {
      const e = expectRecaError(() => load({ backend: 'cuda' }), 'E_DEVICE');
      expect(e.message).toContain(cuda.reason || 'no CUDA device');
    }
    expect(load({ backend: 'cpu' }).backend).toBe('cpu');
    expectRecaError(() => load({ backend: 'tpu' as never }), 'E_INVALID_ARGUMENT');
    expect(info().backend).toBe('cpu');

    const r = await runNode(
      `try { require(${JSON.stringify(path.join(root, 'dist'))}).info(); console.log('ok') } catch (e) { console.log(e.code) }`,
      { RECA_BACKEND: 'bogus' },
    );
    expect(r.stdout.trim()).toBe('E_INVALID_ARGUMENT');
  });
});
