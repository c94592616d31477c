"""The proxy sidecar: Envoy in front of the app (inbound, TLS + policy) and behind it (egress allow-list).

- `model`: the proxy's configuration model (listeners, endpoints, egress), built from the spec.
- `envoy`: renders the model into Envoy's bootstrap (a dict, written as JSON) and validates it with
  the real binary.
- `opa_input` / `decision`: the OPA-Envoy input document and the meaning of a policy's decision.
- `engines`: Rego engines (the real OPA embedded, regopy, an external OPA server).
- `authz`: the HTTP ext_authz server; `extproc`: the gRPC ext_proc server (response inspection).
- `rbac`: policies that need no request body, compiled into Envoy's native RBAC filter.
- `certs`: where the inbound listener's certificate comes from (`CertificateSource`).
"""
