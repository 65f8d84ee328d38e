import { randomUUID } from 'node:crypto';
import { describeSkipped } from '../support/skip';
import { startTestProduct } from '../support/product';
import { catalogRebuildScenario } from './catalogRebuildScenario';

/**
 * The catalog's online rebuild on the production profile: the catalog is a Kafka consumer group
 * per version (`proj.catalog.v<N>`) checkpointing per (category, tenant); a whole rebuild switches
 * once the new group has every tenant's document events, a tenant's rebuild takes its frontier
 * from the keyed checkpoints. Weaviate and Redis are used too when their addresses are given.
 */
const TITLE = 'rebuilding the catalog online on the production profile (Kafka consumer groups)';

if (!process.env.KAFKA_BROKERS) {
  describeSkipped(TITLE, 'KAFKA_BROKERS not set (run npm run infra:up and source .env.infra)');
} else {
  describe(TITLE, () => {
    const ns = `t${randomUUID().replace(/-/g, '').slice(0, 10)}`;
    const env: Record<string, string> = { EMBEDDER: 'hashing', KAFKA_BROKERS: process.env.KAFKA_BROKERS!, KAFKA_NAMESPACE: ns };
    if (process.env.REDIS_URL) env.REDIS_URL = process.env.REDIS_URL;
    if (process.env.WEAVIATE_URL && process.env.WEAVIATE_GRPC_PORT) {
      Object.assign(env, { WEAVIATE_URL: process.env.WEAVIATE_URL, WEAVIATE_GRPC_PORT: process.env.WEAVIATE_GRPC_PORT, WEAVIATE_COLLECTION: `Chunk${ns}` });
    }
    catalogRebuildScenario({ start: () => startTestProduct(env), waitMs: 60_000 });
  });
}
