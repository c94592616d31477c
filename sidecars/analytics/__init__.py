"""Analytics clean rooms (issue 17): Spark SQL over several parties' datasets, each query approved by the
owners of the data it reads.

What exists now is the part that needs no Spark and no network, so it can be checked on its own:
- `documents`: the dataset and query documents, parsed from untrusted JSON with one line per problem;
- `approval`: the approval rule (every owner of every input dataset accepts, none rejects or revokes);
- `sqlguard`: the SQL guards that refuse a query before anything runs (not a single SELECT, a table or
  function the room does not offer, a column outside `allowedFields`, row-level output from an
  aggregate-only dataset), and the aggregation-threshold rewrite.

Still to come (the rest of issue 17): the documents in CGS and the `ccr analytics` commands, the run API
behind the proxy, the Spark image and its views (which must expose only `allowedFields` plus the row id
the threshold rewrite counts, `ROW_ID_COLUMN`), pre-conditions and post-filters at run time, revocation
of a running query, the demo and the benchmarks. sqlglot is an optional dependency (`.[analytics]`): the
sidecars' image does not carry it.
"""
