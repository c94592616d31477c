"""Analytics clean rooms: Spark SQL over several parties' datasets, each query approved by the owners of the
data it reads (docs/analytics.md).

Not a sidecar: the analytics app's code (it runs in the app's container, `ccr analytics serve`, image
images/ccr-analytics) and the members' `ccr analytics` commands.

Parsing and rules, no Spark and no network:
- `documents`: the dataset and query documents, parsed from untrusted JSON with one line per problem;
- `approval`: the approval rule (every owner of every input dataset accepts, none rejects or revokes);
- `sqlguard`: the SQL guards that refuse a query before anything runs, and the aggregation-threshold rewrite;
- `datafiles`: a dataset's files, listed without following links, and checked against its schema.

The app: `engine` (Spark local mode: views of the allowed fields, pre-conditions, threshold, post-filters,
output staged and published whole), `prepare` (documents, approvals and consent from CGS through the
governance sidecar, `roomgov`), `auth` (members' signed requests), `runs` (the run store), `service` (the
run API behind the proxy). The members' side: `cli`, `commands` (dataset and query documents in CGS),
`runcommands` (`ccr analytics run|runs`). sqlglot and pyspark are the optional extra `.[analytics]`: the
sidecars' image does not carry them.
"""
