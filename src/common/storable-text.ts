/**
 * Text as PostgreSQL can store it and as it will read back: NUL (which PostgreSQL refuses in text and
 * jsonb) and lone UTF-16 surrogates (which have no UTF-8 form, so the stored text would differ from
 * the text in hand: a hash over it would not match) become U+FFFD.
 */
export function storableText(value: string): string {
  // eslint-disable-next-line no-control-regex
  return (value.includes('\u0000') ? value.replace(/\u0000/g, '\uFFFD') : value).toWellFormed();
}

/** A JSON value with every key and string made storable (dates and other scalars kept). */
export function storableJson<T>(value: T): T {
  if (typeof value === 'string') return storableText(value) as T;
  if (Array.isArray(value)) return value.map(storableJson) as T;
  if (typeof value !== 'object' || value === null || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) out[storableText(key)] = storableJson(member);
  return out as T;
}
