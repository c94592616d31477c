"""A local stand-in for the Azure clean room governance service (CGS): members, contracts, proposals,
clean-room policy, execution consent, runtime options, secrets, documents, the contract CA, the audit log
and the OIDC issuer, with the reference's room-facing paths and envelope."""
