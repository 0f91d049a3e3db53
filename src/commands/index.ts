/** Every CLI command, one file each. Commands are thin: parse, call the library, write the report. */
import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [];
import { inspectCommand } from './inspect.js';
commands.push(inspectCommand);
import { splitCommand } from './split.js';
commands.push(splitCommand);
import { analyzeCommand } from './analyze.js';
commands.push(analyzeCommand);
import { linearizeCommand } from './linearize.js';
commands.push(linearizeCommand);
import { tightnessCommand } from './tightness.js';
commands.push(tightnessCommand);
import { sensitivityCommand } from './sensitivity.js';
commands.push(sensitivityCommand);
import { bankCommand } from './bank.js';
commands.push(bankCommand);
import { reportCommand } from './report.js';
commands.push(reportCommand);
import { gateCommand } from './gate.js';
commands.push(gateCommand);
import { mergeCommand } from './merge.js';
commands.push(mergeCommand);
import { foolingCommand } from './fooling.js';
commands.push(foolingCommand);
import { attackCommand } from './attack.js';
commands.push(attackCommand);
import { certifyCommand } from './certify.js';
commands.push(certifyCommand);
import { sweepCommand } from './sweep.js';
commands.push(sweepCommand);
