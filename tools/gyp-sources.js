// Lists the source files of one native/ folder for binding.gyp (gyp has no glob).
// Usage: node tools/gyp-sources.js native/cpu [ext ...]
const fs = require('fs');
const path = require('path');
const [dir, ...exts] = process.argv.slice(2);
const want = exts.length ? exts : ['.cpp'];
const root = path.join(__dirname, '..');
const files = fs.existsSync(path.join(root, dir))
  ? fs.readdirSync(path.join(root, dir)).filter((f) => want.includes(path.extname(f))).sort()
  : [];
process.stdout.write(files.map((f) => `${dir}/${f}`).join('\n'));
