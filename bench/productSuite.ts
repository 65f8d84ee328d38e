import type { Bench } from './harness';
import type { Figure } from './stats';
export async function productBenches(_b: Bench, _groups: Set<string>, _sink: (f: Figure[]) => void): Promise<void> {}
