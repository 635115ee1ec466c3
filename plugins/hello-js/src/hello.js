// Greets a name from JSON input: the JavaScript SDK's hello world (the same
// input, output and log line as plugins/hello).
import { Fatal, task } from 'taskhost-sdk';

export const run = task((ctx, input) => {
  // Bad input is fatal, as in the Rust SDK (retrying would not change it).
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new Fatal('invalid input: expected an object with a string field `name`');
  }
  if (!('name' in input)) throw new Fatal('invalid input: missing field `name`');
  if (typeof input.name !== 'string') throw new Fatal('invalid input: `name` is not a string');
  ctx.info(`greeting ${input.name}`);
  return `Hello, ${input.name}!`;
});
