#!/usr/bin/env node
// Writes the fuzz seed corpus (native/fuzz/corpus/<target>/): small valid
// inputs of each kind, made by the engine itself, plus the adversarial
// headers that once cost minutes (they stay as regressions). Run by hand
// after a format change: node tools/fuzz/make-corpus.js
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..', '..');
const { Model, Trainer } = require(path.join(root, 'dist'));
const out = path.join(root, 'native', 'fuzz', 'corpus');

function st(tensors, metadata) {
  // A safetensors file: header JSON (tensors in order, contiguous data), then data.
  const header = {};
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    at += t.bytes.length;
  }
  if (metadata) header.__metadata__ = metadata;
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, ...Object.values(tensors).map((t) => t.bytes)]);
}

function writeAll(dir, files) {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), bytes);
}

// The header of a checkpoint with one metadata value replaced (sizes fixed up).
function withMetadata(file, key, edit) {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString());
  header.__metadata__[key] = edit(header.__metadata__[key]);
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, b.subarray(8 + n)]);
}

async function main() {
  const f32 = (xs) => Buffer.from(new Float32Array(xs).buffer);
  writeAll(path.join(out, 'safetensors'), {
    'one-f32': st({ w: { dtype: 'F32', shape: [2, 2], bytes: f32([1, 2, 3, 4]) } }),
    'mixed-dtypes': st(
      {
        a: { dtype: 'F16', shape: [3], bytes: Buffer.from([0, 60, 0, 64, 0, 66]) },
        b: { dtype: 'BF16', shape: [1, 2], bytes: Buffer.from([128, 63, 0, 64]) },
        c: { dtype: 'I32', shape: [1], bytes: Buffer.from([7, 0, 0, 0]) },
        d: { dtype: 'U8', shape: [0, 4], bytes: Buffer.alloc(0) },
      },
      { note: 'x', 'reca.format': 'reca-engine/1' },
    ),
    scalar: st({ s: { dtype: 'F32', shape: [], bytes: f32([0.5]) } }),
  });

  // Checkpoints of the smallest config the engine accepts, with and without trainer state.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-corpus-'));
  const config = { image_size: 4, gen_patch: 2, und_image_size: 2, und_patch: 1, und_width: 2, und_depth: 1, und_heads: 1,
    width: 4, depth: 1, heads: 1, mlp_ratio: 1, codebook_size: 2, code_dim: 1, max_text_len: 2 };
  const files = {};
  for (const mode of ['mask', 'flow']) {
    const model = await Model.create({ preset: 'tiny', mode, config });
    const plain = path.join(tmp, `${mode}.safetensors`);
    await model.save(plain, { dtype: 'float16' });
    files[`${mode}-f16`] = fs.readFileSync(plain);
    const trainer = new Trainer(model, { ema: 0.5 });
    const withTrainer = path.join(tmp, `${mode}-trainer.safetensors`);
    await model.save(withTrainer, { trainer });
    files[`${mode}-trainer`] = fs.readFileSync(withTrainer);
    trainer.dispose();
    model.dispose();
  }
  const mask = path.join(tmp, 'mask.safetensors');
  // Adversarial headers: one number in the config that once made a 738 KB file cost 82 s and 5 GB.
  for (const field of ['depth', 'und_depth', 'width', 'codebook_size', 'max_text_len']) {
    files[`huge-${field}`] = withMetadata(mask, 'reca.config', (c) => JSON.stringify({ ...JSON.parse(c), [field]: 1048576 }));
  }
  writeAll(path.join(out, 'checkpoint'), files);

  const m = await Model.create({ preset: 'tiny' });
  const t = new Trainer(m, {});
  const configJson = m.native.configJson;
  const trainerJson = t.native.optionsJson;
  t.dispose();
  m.dispose();
  // The first byte picks the reader (fuzz_options_json.cpp): 0 any JSON, 1 config, 2 trainer options.
  writeAll(path.join(out, 'options_json'), {
    'any-nested': Buffer.concat([Buffer.from([0]), Buffer.from('{"a":[1,-2.5e3,true,null,"\\u00e9"],"b":{}}')]),
    config: Buffer.concat([Buffer.from([1]), Buffer.from(configJson)]),
    trainer: Buffer.concat([Buffer.from([2]), Buffer.from(trainerJson)]),
  });
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
