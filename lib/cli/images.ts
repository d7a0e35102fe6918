/** `reca sample`, `reca reconstruct` and `reca embed`: images in, images or embeddings out. */
import * as path from 'path';

import { writeGrid, writePng } from '../images';
import { writeSafetensors } from '../safetensors';
import { applyThreads, imagesFrom, interleave, mkdir, mkdirFor, modelFrom, samplerFrom } from './common';
import { JSON_FLAG, MODEL_OPTIONS, num, parseCommand, renderHelp, required, SAMPLER_OPTIONS, str, THREADS, UsageError, type CommandSpec } from './options';

export const SAMPLE: CommandSpec = {
  name: 'sample',
  usage: '--prompt TEXT [--prompt TEXT ...] --out FILE.png [options]',
  summary: 'generate images from prompts into a labelled PNG grid',
  description: 'Generates images from prompts and writes a labelled grid (and each image with --each).',
  options: [
    ...MODEL_OPTIONS,
    { name: 'prompt', kind: 'list', value: 'TEXT', help: 'a prompt (repeat the option for more)' },
    { name: 'n', kind: 'int', value: 'N', min: 1, default: 4, help: 'images per prompt' },
    { name: 'out', kind: 'string', value: 'FILE', help: 'PNG grid to write' },
    { name: 'each', kind: 'string', value: 'DIR', help: 'also write one PNG per image to DIR' },
    THREADS,
    { ...JSON_FLAG, help: 'print a JSON summary' },
    ...SAMPLER_OPTIONS,
  ],
};

export async function cmdSample(args: string[]): Promise<void> {
  const { values, help } = parseCommand(SAMPLE, args);
  if (help) return void console.log(renderHelp(SAMPLE));
  const prompts = (values.prompt as string[] | undefined) ?? [];
  if (!prompts.length) throw new UsageError('sample needs at least one --prompt TEXT');
  const out = required(values, 'out', 'sample', 'FILE.png');
  const n = num(values, 'n') ?? 4;
  const each = str(values, 'each');
  applyThreads(values);
  mkdirFor(out);
  using model = await modelFrom(values);
  const S = model.config.image_size;
  const all = prompts.flatMap((p) => Array.from({ length: n }, () => p));
  using images = await model.generate({ ...samplerFrom(values, model.config.mode), prompts: all });
  const bytes = images.toArray();
  await writeGrid(out, bytes, all.length, S, { columns: n, scale: S <= 16 ? 8 : 4, labels: all });
  if (each) {
    mkdir(each);
    for (let i = 0; i < all.length; i++) {
      await writePng(path.join(each, `${String(i).padStart(4, '0')}.png`), bytes.subarray(i * S * S * 3, (i + 1) * S * S * 3), S, S);
    }
  }
  if (values.json) console.log(JSON.stringify({ out, each: each ?? null, images: all.length, prompts }, null, 2));
  else console.log(`wrote ${out}${each ? ` and ${all.length} images to ${each}` : ''}`);
}

const IMAGES_OPTION = { name: 'images', kind: 'string', value: 'D', help: "a folder of images, or 'shapes' for shapes-world scenes" } as const;

export const RECONSTRUCT: CommandSpec = {
  name: 'reconstruct',
  usage: '--images DIR|shapes --out FILE.png [options]',
  summary: "regenerate images from the model's own embeddings (what RecA trains)",
  description: `Regenerates images from the model's own understanding embeddings plus the
template (what RecA trains), and writes originals beside reconstructions.`,
  options: [
    ...MODEL_OPTIONS,
    IMAGES_OPTION,
    { name: 'limit', kind: 'int', value: 'N', min: 1, default: 16, help: 'images at most' },
    { name: 'template', kind: 'string', value: 'TEXT', default: '"describe the image"', help: 'the text beside the embeddings' },
    { name: 'out', kind: 'string', value: 'FILE', help: 'PNG grid to write' },
    THREADS,
    { ...JSON_FLAG, help: 'print a JSON summary' },
    ...SAMPLER_OPTIONS,
  ],
};

export async function cmdReconstruct(args: string[]): Promise<void> {
  const { values, help } = parseCommand(RECONSTRUCT, args);
  if (help) return void console.log(renderHelp(RECONSTRUCT));
  const spec = required(values, 'images', 'reconstruct', 'DIR (or shapes)');
  const out = required(values, 'out', 'reconstruct', 'FILE.png');
  const limit = num(values, 'limit') ?? 16;
  applyThreads(values);
  mkdirFor(out);
  using model = await modelFrom(values);
  const S = model.config.image_size;
  const { images, count } = await imagesFrom(spec, S, limit);
  using recon = await model.reconstruct({ data: images, shape: [count, S, S, 3] }, { ...samplerFrom(values, model.config.mode), template: str(values, 'template') });
  const pair = interleave(images, recon.toArray(), count, S);
  await writeGrid(out, pair, 2 * count, S, { columns: 8, scale: S <= 16 ? 8 : 4, labels: Array.from({ length: 2 * count }, (_, i) => (i % 2 ? 'recon' : 'input')) });
  if (values.json) console.log(JSON.stringify({ out, images: count }, null, 2));
  else console.log(`wrote ${out} (${count} images and their reconstructions)`);
}

export const EMBED: CommandSpec = {
  name: 'embed',
  usage: '--images DIR|shapes --out FILE.safetensors [options]',
  summary: 'write the understanding embeddings of images (safetensors)',
  description: `Writes the understanding embeddings of images (float32 [count, N_u, width],
key "embeddings") and their file names (metadata "files") as safetensors.`,
  options: [
    ...MODEL_OPTIONS,
    IMAGES_OPTION,
    { name: 'limit', kind: 'int', value: 'N', min: 1, default: 'all; shapes: 64', help: 'images at most' },
    { name: 'out', kind: 'string', value: 'FILE', help: 'safetensors file to write' },
    THREADS,
    { ...JSON_FLAG, help: 'print a JSON summary' },
  ],
};

export async function cmdEmbed(args: string[]): Promise<void> {
  const { values, help } = parseCommand(EMBED, args);
  if (help) return void console.log(renderHelp(EMBED));
  const spec = required(values, 'images', 'embed', 'DIR (or shapes)');
  const out = required(values, 'out', 'embed', 'FILE.safetensors');
  const limit = num(values, 'limit');
  applyThreads(values);
  mkdirFor(out);
  using model = await modelFrom(values);
  const S = model.config.image_size;
  const { images, count, names } = await imagesFrom(spec, S, limit);
  using emb = await model.embed({ data: images, shape: [count, S, S, 3] });
  const shape = emb.shape;
  await writeSafetensors(out, { embeddings: { dtype: 'F32', shape, data: emb.toArray() } }, { files: JSON.stringify(names), 'reca.config': JSON.stringify(model.config) });
  const summary = { out, count, shape };
  console.log(values.json ? JSON.stringify(summary, null, 2) : `wrote ${out}: embeddings float32 [${shape.join(', ')}]`);
}
