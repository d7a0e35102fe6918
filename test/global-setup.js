// Compiles lib/ into dist/ when any source is newer than its output, so the
// tests that spawn `node dist/cli.js` or load dist/ in a Worker see this code.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

module.exports = async function globalSetup() {
  const root = path.join(__dirname, '..');
  const lib = path.join(root, 'lib');
  const stale = fs.readdirSync(lib, { recursive: true }).some((f) => {
    if (!f.endsWith('.ts')) return false;
    const out = path.join(root, 'dist', f.replace(/\.ts$/, '.js'));
    return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(path.join(lib, f)).mtimeMs;
  });
  if (stale) {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], {
      stdio: 'inherit',
    });
    // Same as `npm run build:ts`: the package's bin must be executable for `npx reca`.
    fs.chmodSync(path.join(root, 'dist', 'cli.js'), 0o755);
  }
};
