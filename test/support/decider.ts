/** given(events).when(command).then(events) / .thenThrows(ErrorClass) for pure deciders. */
export function deciderSpec<S, E, C>(d: { initialState: () => S; evolve: (s: S, e: E) => S; decide: (c: C, s: S) => E[] }) {
  return (given: E[]) => ({
    when(command: C) {
      const run = () => d.decide(command, given.reduce(d.evolve, d.initialState()));
      return {
        then(expected: E[]) {
          expect(run()).toEqual(expected);
        },
        thenThrows(errorClass: new (...args: never[]) => Error, message?: RegExp) {
          expect(run).toThrow(errorClass);
          if (message) expect(run).toThrow(message);
        },
      };
    },
  });
}
