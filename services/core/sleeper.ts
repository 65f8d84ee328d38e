/** A sleep that another event (new events appended, a stop) can cut short. */
export interface Sleeper {
  sleep(ms: number): Promise<void>;
  wake(): void;
}

export function createSleeper(): Sleeper {
  let waker: (() => void) | null = null;
  return {
    sleep(ms) {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waker = null;
          resolve();
        };
        const timer = setTimeout(done, ms);
        waker = done;
      });
    },
    wake() {
      waker?.();
    },
  };
}
