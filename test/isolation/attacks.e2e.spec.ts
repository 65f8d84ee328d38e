import { attackSuite } from './attackSuite';

attackSuite('tenant isolation under attack (embedded profile, HTTP, two tenants, PG pool of two)', async () => ({ env: {}, stop: async () => undefined }));
