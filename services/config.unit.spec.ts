import { ConfigError, loadEnv } from './config';

const base = { DATA_DIR: '/tmp/tenant-rag-config-unit', JWT_SECRET: 'unit-jwt-secret-0123456789abcdef0123456789', ADMIN_TOKEN: 'unit-admin-token-0123456789abcdef0123456789' };

describe('SHUTDOWN_TIMEOUT_MS', () => {
  it('defaults to 10 s and takes whole milliseconds from 1 s to 10 min', () => {
    expect(loadEnv({ ...base } as NodeJS.ProcessEnv).shutdownTimeoutMs).toBe(10_000);
    expect(loadEnv({ ...base, SHUTDOWN_TIMEOUT_MS: '2500' } as NodeJS.ProcessEnv).shutdownTimeoutMs).toBe(2500);
  });

  it.each(['999', '600001', '1.5e3x', '-1', '2000.5'])('refuses %s as a configuration error (exit 78)', (v) => {
    expect(() => loadEnv({ ...base, SHUTDOWN_TIMEOUT_MS: v } as NodeJS.ProcessEnv)).toThrow(ConfigError);
  });
});

describe('HEAP_GROWTH_PERCENT', () => {
  it('defaults to 20 and takes a whole percentage, 0 for V8 its own policy', () => {
    expect(loadEnv({ ...base } as NodeJS.ProcessEnv).heapGrowthPercent).toBe(20);
    expect(loadEnv({ ...base, HEAP_GROWTH_PERCENT: '0' } as NodeJS.ProcessEnv).heapGrowthPercent).toBe(0);
    expect(loadEnv({ ...base, HEAP_GROWTH_PERCENT: '35' } as NodeJS.ProcessEnv).heapGrowthPercent).toBe(35);
  });

  it.each(['-1', '2.5', 'ten', '1001'])('refuses %s as a configuration error (exit 78)', (v) => {
    expect(() => loadEnv({ ...base, HEAP_GROWTH_PERCENT: v } as NodeJS.ProcessEnv)).toThrow(ConfigError);
  });
});
