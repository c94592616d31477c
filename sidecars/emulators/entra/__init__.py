"""A local stand-in for the Microsoft Entra token endpoint: the client-credentials grant with a federated
client assertion (workload identity federation), issuing v1 access tokens that Azurite and the Key Vault
stand-in accept."""

# The tenant the local emulation's identities live in (`entra_tenant_id` in endpoints.json); the stand-in
# answers for any tenant in the URL, as Entra does for the tenants it hosts.
LOCAL_TENANT_ID = "c0de0000-0000-4000-8000-00000000e002"
