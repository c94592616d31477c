"""A local stand-in for the Microsoft Entra token endpoint: the client-credentials grant with a federated
client assertion (workload identity federation), issuing v1 access tokens that Azurite and the Key Vault
stand-in accept."""
