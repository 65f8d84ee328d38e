import { productionAvailability, productionServers } from '../support/servers';
import { describeSkipped } from '../support/skip';
import { attackSuite } from './attackSuite';

const TITLE = 'tenant isolation under attack (production profile: Kafka, Weaviate, Redis; PG pool of two)';
const availability = productionAvailability();

if ('skip' in availability) describeSkipped(TITLE, availability.skip);
else attackSuite(TITLE, () => productionServers(availability.source));
