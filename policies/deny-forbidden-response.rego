# Requests: any GET. Responses: judged by `response` before they leave the room. A JSON response that
# carries a forbidden field is blocked (502 with a reason); the `email` field is redacted.
package envoy.authz

default allow := false

allow if input.attributes.request.http.method == "GET"

forbidden_fields := {"ssn", "credit_card"}

default response := true

response := {
	"allowed": false,
	"http_status": 502,
	"headers": {"content-type": "text/plain"},
	"body": sprintf("ccr-proxy: the response carried forbidden fields %v\n", [leaked]),
} if {
	leaked := {f | some f in forbidden_fields; f in object.keys(input.response.parsed_body)}
	count(leaked) > 0
}

response := {"allowed": true, "body": json.marshal(object.remove(input.response.parsed_body, {"email"}))} if {
	"email" in object.keys(input.response.parsed_body)
	not any_forbidden
}

any_forbidden if {
	some f in forbidden_fields
	f in object.keys(input.response.parsed_body)
}
