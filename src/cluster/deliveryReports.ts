/** Whether each 200 reached its node, said to the primary. */
export interface DeliveryReports {
  readonly delivered: (localpart: string, reached: boolean) => void;
  /** Says the successes not said yet, now. */
  readonly flush: () => void;
}

/**
 * A failure is said at once; the 200s that reached their nodes are said together once this turn of the event loop is
 * done (under load, many in one report), before a node can have sent its next request: from then on their records
 * count as answered.
 */
export function batchedDeliveryReports(say: (localparts: string[], reached: boolean) => void): DeliveryReports {
  let reached: string[] = [];
  const flush = (): void => {
    if (reached.length > 0) say(reached, true);
    reached = [];
  };
  return {
    delivered: (localpart, ok) => {
      if (!ok) {
        say([localpart], false);
        return;
      }
      if (reached.length === 0) setImmediate(flush);
      reached.push(localpart);
    },
    flush,
  };
}
