# OPA-Envoy input shape: only the analytics run API reaches the app (docs/analytics.md):
#   POST /queries/{queryId}/run, GET /runs/{runId}, GET /queries/{queryId}/runs.
# Names are CGS document ids and run ids (plain names); anything else, another method or a longer path
# is refused by the proxy before the app sees it. The app still authenticates every request itself.
package envoy.authz

default allow := false

plain_name(name) if regex.match(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`, name)

allow if {
	input.attributes.request.http.method == "POST"
	count(input.parsed_path) == 3
	input.parsed_path[0] == "queries"
	plain_name(input.parsed_path[1])
	input.parsed_path[2] == "run"
}

allow if {
	input.attributes.request.http.method == "GET"
	count(input.parsed_path) == 2
	input.parsed_path[0] == "runs"
	plain_name(input.parsed_path[1])
}

allow if {
	input.attributes.request.http.method == "GET"
	count(input.parsed_path) == 3
	input.parsed_path[0] == "queries"
	plain_name(input.parsed_path[1])
	input.parsed_path[2] == "runs"
}
