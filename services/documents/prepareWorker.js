'use strict';
/**
 * Worker thread of services/documents/prepare.ts: parses and chunks one document per message.
 *
 * The project's modules are TypeScript; this entry is plain CommonJS so that it starts the same
 * under `tsx` (npm start), @swc/jest and plain node, and loads prepare.ts through tsx's CommonJS
 * API (or prepare.js where the project was compiled).
 */
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { parentPort } = require('node:worker_threads');

function load() {
  const compiled = join(__dirname, 'prepare.js');
  if (existsSync(compiled)) return require(compiled);
  return require('tsx/cjs/api').require('./prepare.ts', __filename);
}

const { prepareDocument, tokenCounter } = load();

parentPort.on('message', async (m) => {
  try {
    const bytes = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
    const result = await prepareDocument(
      { filename: m.filename, bytes, declaredType: m.declaredType },
      { ...m.opts, countTokens: tokenCounter(m.spec) },
    );
    parentPort.postMessage({ id: m.id, ok: true, result });
  } catch (err) {
    const parse = err && err.name === 'DocumentParseError' ? { code: err.code, reason: err.reason } : undefined;
    parentPort.postMessage({ id: m.id, ok: false, parse, message: err && err.message ? String(err.message) : String(err) });
  }
});
