"""The proxy sidecar: Envoy in front of the app (inbound, TLS + policy) and behind it (egress allow-list).

Inbound (the `inbound` port of its registry entry, `sidecar.PROXY`): clients connect over TLS 1.3 with the
room's certificate (`certs.CertificateSource`); the firewall REDIRECTs connections for the app's ports here
and the original destination port picks the endpoint; the endpoint's Rego policy judges every request (RBAC
when compilable, else ext_authz → OPA) and, when it has a `response` rule, every response (ext_proc).
See policies/README.md.

Egress: the app speaks plain HTTP — to `http://HOST[:PORT]/…` (redirected to the `http` port) or
through `HTTP_PROXY` set to it — and the proxy opens TLS to allow-listed `https` hosts itself,
verifying the certificate (CA bundle + name, SNI set), so an app cannot accept a forged upstream. TCP
(the `tcp` port) reaches only allow-listed ip:port, by the original destination of the redirected connection;
with `egress.dns: tcp`, TCP to port 53 goes to the room's resolvers whatever address the app chose.
Anything else gets a refusal that says why.

- `model`: the configuration model, built from the spec; `envoy`: renders it to Envoy's bootstrap and
  validates it with the real binary; `runtime`: plans enforcement and runs authz, ext_proc and Envoy.
- `opa_input` / `decision` / `policies`: the OPA-Envoy input, the meaning of a decision, judging.
- `engines`: the real OPA embedded, regopy, an external OPA server.
- `authz`: the HTTP ext_authz server; `extproc`: the gRPC ext_proc server; `rbac`: the RBAC compiler.
"""
