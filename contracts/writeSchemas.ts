import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaFiles } from './schemas';

for (const [name, schema] of Object.entries(schemaFiles())) {
  writeFileSync(join(__dirname, 'schemas', name), `${JSON.stringify(schema, null, 2)}\n`);
}
process.stdout.write(`wrote ${Object.keys(schemaFiles()).length} schemas to contracts/schemas/\n`);
