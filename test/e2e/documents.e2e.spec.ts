import { startTestProduct } from '../support/product';
import { documentsScenario } from './documentsScenario';

documentsScenario(
  'embedded product, end to end over HTTP',
  async () => {
    const product = await startTestProduct();
    return { product, stop: () => product.stop() };
  },
  { vector_index: 'embedded', bus: 'in-process (store subscription)', rate_limiter: 'memory' },
);
