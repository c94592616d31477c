# OPA-Envoy input shape: only GET /hello reaches the app.
package envoy.authz

default allow := false

allow if {
	input.attributes.request.http.method == "GET"
	input.parsed_path == ["hello"]
}
