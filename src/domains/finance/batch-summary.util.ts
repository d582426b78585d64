/** What a batch answer's items are, as its audit row counts them: each scored one has a result with its decision. */
type DecidedItems = ReadonlyArray<{ result?: { decision?: unknown } }>;

/** A batch's answered items by decision (`decisions`: the route's, each counted from 0). */
export function decisionCounts<D extends string>(items: DecidedItems, decisions: readonly D[]): Record<D, number> {
  const counts = Object.fromEntries(decisions.map((d) => [d, 0])) as Record<D, number>;
  for (const item of items) {
    const decision = item.result?.decision;
    if ((decisions as readonly unknown[]).includes(decision)) counts[decision as D]++;
  }
  return counts;
}

/**
 * The challenger's decisions over a batch and how often it agreed with the champion, for the batch's audit row.
 * `shadow` holds one verdict per item with a result, in order.
 */
export function shadowSummary<D extends string>(
  items: DecidedItems,
  shadow: ReadonlyArray<{ version: string; decision: D }>,
  decisions: readonly D[],
): Record<string, unknown> {
  const counts = decisionCounts([], decisions);
  let agreed = 0;
  let k = 0;
  for (const item of items) {
    if (!item.result) continue;
    const verdict = shadow[k++];
    counts[verdict.decision]++;
    if (verdict.decision === item.result.decision) agreed++;
  }
  return { version: shadow[0]?.version, decisions: counts, agreed };
}
