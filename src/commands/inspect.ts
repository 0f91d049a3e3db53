/**
 * `netmoments inspect MODEL [--json]`: what the model is and where it can be split
 * (onnx/describe.ts builds the report, schema netmoments.inspect/1; report/inspect.ts writes its text).
 */
import type { CommandModule } from 'yargs';
import { inspectGraph } from '../onnx/describe.js';
import { loadModel } from '../onnx/load.js';
import { formatInspect } from '../report/inspect.js';
import { NetmomentsError } from '../errors.js';
import { propagationSummary } from '../propagate/index.js';

interface InspectArgs {
  model: string;
  json?: boolean;
  quiet?: boolean;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <model>',
  describe: "Show a model's inputs, outputs, ops, parameters, ReLU split points and whether every op has a moment rule (--method propagate)",
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file' })
      .option('json', { type: 'boolean', describe: 'Print the report as JSON (schema netmoments.inspect/1)' })
      .example('$0 inspect fixtures/lenet.onnx', 'inputs, outputs, ops and the ReLU split points of the bundled LeNet')
      .example('$0 inspect fixtures/lenet.onnx --json', 'the same as JSON (schemas/inspect.schema.json)') as never,
  handler: async (argv) => {
    const model = loadModel(argv.model);
    if (!argv.quiet) for (const w of model.warnings) process.stderr.write(`netmoments: ${argv.model}: note: ${w}\n`);
    const note = (m: string) => {
      if (!argv.quiet) process.stderr.write(`netmoments: ${argv.model}: note: ${m.replace(/\s*\n\s*/g, ' ')}\n`);
    };
    const report = await inspectGraph(model.graph, argv.model, undefined, { onNote: note });
    try {
      report.propagate = propagationSummary(model.graph);
    } catch (e) {
      // e.g. two data inputs: propagate then needs --noise-input and --feed, which inspect has not
      if (!(e instanceof NetmomentsError)) throw e;
      report.propagate = { supported: false, missing: [], fused: [], reason: e.message };
    }
    process.stdout.write(argv.json ? `${JSON.stringify(report, null, 2)}\n` : formatInspect(report));
  },
};
