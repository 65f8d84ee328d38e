import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CURRENT_SCHEMA_VERSION } from './events';
import { EVENT_SCHEMAS, schemaFiles } from './schemas';

describe('event contracts', () => {
  it('has a JSON Schema for every event type at its current version', () => {
    for (const [type, version] of Object.entries(CURRENT_SCHEMA_VERSION)) {
      expect(EVENT_SCHEMAS[type]?.[version]).toBeDefined();
    }
  });

  it('keeps contracts/schemas/ in step with contracts/schemas.ts (run npm run contracts:schemas)', () => {
    const dir = join(__dirname, 'schemas');
    const onDisk = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
    const expected = schemaFiles();
    expect(onDisk).toEqual(Object.keys(expected).sort());
    for (const f of onDisk) expect(JSON.parse(readFileSync(join(dir, f), 'utf8'))).toEqual(expected[f]);
  });
});
