"""Do the registry logs arrive, and what do they show? Pure analysis of Log Analytics rows.

Three steps, none doing I/O, one module each, over the values of `model`:

1. `routing.plan_routes`: which registry should be filling which tables of which workspace;
2. `build.build_evidence`: the query rows, read tolerantly (`rows`), as one `LogEvidence`
   per registry, with its observations;
3. `judgement.apply_evidence`: the verdicts with the log findings added.
"""
