/**
 * Models with several data inputs: `--noise-input NAME` and `--feed NAME=FILE.npy` (onnx/feeds.ts
 * fixes the fed inputs as constants when the model loads).
 */
import type { Argv } from 'yargs';
import { readNpy } from '../data/npy.js';
import { NetmomentsError } from '../errors.js';
import type { InputChoice, InputFeed } from '../onnx/feeds.js';

export interface InputFeedArgs {
  feed?: string[];
  'noise-input'?: string;
}

export function inputFeedOptions<T>(y: Argv<T>): Argv<T & InputFeedArgs> {
  return y
    .option('noise-input', {
      type: 'string',
      describe: 'For a model with several data inputs: the input the noise goes on (--input gives its values); fix every other input with --feed',
      group: 'Model:',
    })
    .option('feed', {
      type: 'string',
      array: true,
      describe:
        'NAME=FILE.npy: fix the data input NAME to the values in FILE.npy (with or without the batch axis); repeat for each input other than --noise-input',
      group: 'Model:',
    }) as unknown as Argv<T & InputFeedArgs>;
}

/** One `--feed NAME=FILE.npy`: the input's name and the array in the file. */
export function readFeed(spec: string): InputFeed {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new NetmomentsError(`--feed ${spec}: expected NAME=FILE.npy`, { code: 'BAD_INPUT' });
  const source = spec.slice(eq + 1);
  const array = readNpy(source);
  return { name: spec.slice(0, eq), dims: [...array.shape], data: array.data, source };
}

/** The feeds read from their files and the noisy input's name, for loadModel. */
export function inputChoice(args: InputFeedArgs): InputChoice {
  return { feeds: (args.feed ?? []).map(readFeed), noiseInput: args['noise-input'] };
}
