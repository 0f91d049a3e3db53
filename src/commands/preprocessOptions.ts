/**
 * The preprocessing options every command that reads image inputs takes (--scale, --offset, --mean,
 * --std; the formula is in data/preprocess.ts), and their checked values.
 */
import type { Argv } from 'yargs';
import { checkPreprocessing } from '../data/preprocess.js';
import { parseNumberList } from '../experiments/common.js';

export interface PreprocessArgs {
  scale?: number;
  offset?: number;
  mean?: string;
  std?: string;
}

export function preprocessOptions<T>(y: Argv<T>): Argv<T & PreprocessArgs> {
  return y
    .option('scale', {
      type: 'number',
      describe:
        'Preprocessing for image inputs (PNG, JPEG, idx, uint8 .npy): model = (pixel/255 - mean[c]) / std[c] * scale + offset (default: from the model metadata, else 1)',
      group: 'Model:',
    })
    .option('offset', { type: 'number', describe: 'Preprocessing offset (see --scale)', group: 'Model:' })
    .option('mean', {
      type: 'string',
      describe:
        "Per-channel mean of pixel/255 for image inputs, one value or one per channel, e.g. 0.485,0.456,0.406 (torchvision's Normalize; default: the model's metadata 'mean'/'image_mean', else 0)",
      group: 'Model:',
    })
    .option('std', {
      type: 'string',
      describe:
        "Per-channel std of pixel/255, e.g. 0.229,0.224,0.225 (default: metadata 'std'/'image_std', else 1). Noise is added in the model's input space, after this: sigma S is S * std[c] * 255 / scale pixel levels in channel c",
      group: 'Model:',
    }) as unknown as Argv<T & PreprocessArgs>;
}

/** --scale, --offset, --mean and --std as given (lists parsed, values checked). */
export function preprocessingArgs(args: PreprocessArgs): { scale?: number; offset?: number; mean?: number[]; std?: number[] } {
  const mean = args.mean === undefined ? undefined : parseNumberList(args.mean, '--mean');
  const std = args.std === undefined ? undefined : parseNumberList(args.std, '--std');
  checkPreprocessing({ scale: args.scale ?? 1, offset: args.offset ?? 0, mean, std });
  return { scale: args.scale, offset: args.offset, mean, std };
}
