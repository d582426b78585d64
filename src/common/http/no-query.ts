/**
 * The query of a route that takes no parameters. Bound with `@Query() _query: NoQueryDto`, the one validation
 * pipe refuses any parameter with 400 naming it (its whitelist knows none), where it was ignored: a filter an
 * operator or auditor misspelt or assumed (`/v1/manufacturing/assets?site=...`) was answered as if it applied.
 */
export class NoQueryDto {}
