#!/usr/bin/env node
// The CLI entry point runs the compiled code (npm run build writes dist/).
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
