/**
 * The catalog's online rebuild against indexing from scratch, on the embedded profile with the
 * hashing embedder: N documents uploaded and indexed through the API, then one whole rebuild
 * (`manager.rebuild('catalog')`, what `npm run replay -- catalog` asks for) while one search loop
 * runs; prints the times, the passage embeddings the rebuild caused (0: chunk sets re-linked) and
 * the loop's errors and empty answers (both must be 0).
 *
 *   npx tsx bench/catalogRebuild.ts [documents=200]
 */
import request from 'supertest';
import { provisionTenant, startTestProduct, waitUntilIndexed } from '../test/support/product';

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200);
  const product = await startTestProduct({ EMBEDDER: 'hashing' });
  try {
    const tenant = await provisionTenant(product, 'bench-catalog');
    const words = ['tide', 'bread', 'orbit', 'garden', 'violin', 'glacier', 'chess', 'volcano', 'ferry', 'loom'];
    const started = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const body = Array.from({ length: 40 }, (_, k) => `${words[(i + k) % 10]} sentence ${i} ${k} about ${words[(i * 7 + k) % 10]} and more text to chunk.`).join(' ');
      ids.push((await request(product.app).post('/v1/documents').set(tenant.auth).send({ filename: `d${i}.md`, text: `# Doc ${i}\n\n${body}` })).body.id);
    }
    for (const id of ids) await waitUntilIndexed(product, tenant, id, 300_000);
    const indexedMs = Date.now() - started;
    let embeds = 0;
    const embedder = product.deps.embedder;
    const embed = embedder.embed.bind(embedder);
    embedder.embed = async (texts, kind) => {
      if (kind === 'passage') embeds += texts.length;
      return embed(texts, kind);
    };
    const search = () => request(product.app).post('/v1/search').set(tenant.auth).send({ query: 'glacier violin', top_k: 10 });
    await search(); // the tenant's index loaded before the clock starts
    let finished = false;
    let searches = 0;
    let errors = 0;
    let empty = 0;
    const rebuildStarted = Date.now();
    const { done } = await product.deps.manager.rebuild('catalog');
    void done.then(() => void (finished = true));
    while (!finished) {
      const r = await search();
      searches++;
      if (r.status !== 200) errors++;
      else if (r.body.results.length === 0) empty++;
    }
    const result = await done;
    process.stdout.write(
      `${JSON.stringify({ documents: n, upload_and_index_ms: indexedMs, rebuild_ms: Date.now() - rebuildStarted, state: result.state, events: result.done, passages_embedded: embeds, searches_during: searches, errors, empty })}\n`,
    );
  } finally {
    await product.stop();
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
