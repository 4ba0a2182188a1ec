import { Command } from 'commander';
import { VOCO_VERSION } from '../engine/keys.ts';
import { registerCache } from './cache.ts';
import { registerDag } from './dag.ts';
import { registerModel } from './model.ts';
import { registerPreview } from './preview.ts';
import { registerRun } from './run.ts';
import { registerRuns } from './runs.ts';
import { registerStatus } from './status.ts';
import { registerValidate } from './validate.ts';
import { registerWeights } from './weights.ts';

const program = new Command()
  .name('voco')
  .description('Declarative, cached, resumable VoCo pre-training pipelines for 3D CT')
  .version(VOCO_VERSION)
  .showHelpAfterError();

registerRun(program);
registerValidate(program);
registerStatus(program);
registerDag(program);
registerRuns(program);
registerCache(program);
registerPreview(program);
registerWeights(program);
registerModel(program);

await program.parseAsync(process.argv);
