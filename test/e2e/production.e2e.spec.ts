import { startTestProduct } from '../support/product';
import { productionAvailability, productionServers } from '../support/servers';
import { describeSkipped } from '../support/skip';
import { documentsScenario } from './documentsScenario';

/** The same scenario on the production profile: Kafka relay + consumer groups, Weaviate, Redis. */
const TITLE = 'production profile (Kafka, Weaviate, Redis), end to end over HTTP';
const availability = productionAvailability();

if ('skip' in availability) {
  describeSkipped(TITLE, availability.skip);
} else {
  documentsScenario(
    TITLE,
    async () => {
      const servers = await productionServers(availability.source);
      const product = await startTestProduct(servers.env);
      return {
        product,
        stop: async () => {
          await product.stop();
          await servers.stop();
        },
      };
    },
    { vector_index: 'weaviate', bus: 'kafka', rate_limiter: 'redis', relay: 'kafka relay (active)' },
  );
}
