# OPA-Envoy input shape: only `POST /orders` with a JSON body of the agreed form reaches the app:
# {"item": non-empty string, "quantity": integer 1..100, "note": optional string}, no other field.
package envoy.authz

default allow := false

allowed_fields := {"item", "quantity", "note"}

allow if {
	input.attributes.request.http.method == "POST"
	input.parsed_path == ["orders"]
	startswith(input.attributes.request.http.headers["content-type"], "application/json")
	order_is_valid(input.parsed_body)
}

order_is_valid(order) if {
	is_object(order)
	every field in object.keys(order) { field in allowed_fields }
	is_string(order.item)
	count(order.item) > 0
	is_number(order.quantity)
	order.quantity == floor(order.quantity)
	order.quantity >= 1
	order.quantity <= 100
	note_is_valid(order)
}

note_is_valid(order) if not "note" in object.keys(order)

note_is_valid(order) if is_string(order.note)
