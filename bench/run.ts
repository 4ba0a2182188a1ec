import { benchEngine } from './engine.bench.ts';
import { benchVolumes } from './volumes.bench.ts';
import { benchBackends } from './backends.bench.ts';
import { benchModels } from './models.bench.ts';
import { benchTrain } from './train.bench.ts';
import { benchCropLoader } from './crop-loader.bench.ts';
import { printTable, type BenchRow } from './table.ts';

const only = process.argv[2];
const rows: BenchRow[] = [];
const benches: Record<string, () => BenchRow[] | Promise<BenchRow[]>> = { engine: benchEngine, volumes: benchVolumes, backends: benchBackends, models: benchModels, 'crop-loader': () => benchCropLoader(), train: benchTrain };
for (const [name, bench] of Object.entries(benches)) {
  if (only && only !== name) continue;
  process.stderr.write(`running ${name} benchmark...\n`);
  rows.push(...(await bench()));
}
console.log(`\nvoco benchmarks — ${new Date().toISOString()} — node ${process.version}\n`);
printTable(rows);
