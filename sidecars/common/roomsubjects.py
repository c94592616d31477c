"""The subjects of the federated tokens governance mints for a room (`POST /oauth/token?sub=`).

CGS signs a client assertion for any `sub` the attested room names, and every room of every contract shares
the issuer: what a trust (an Entra federated credential, an AWS role's trust policy) binds to is the
subject. The app's subject is the contract id, as in Azure's clean rooms. The room's sidecars reach the
parties' storage under a subject of their own, `CONTRACT/ccr-sidecars`, which an S3 role's trust policy
names: the app may list the governance API and still never hold a token that assumes the volumes' role.
Governance mints a subject other than the contract id only for callers presenting the sidecar token.
"""

from __future__ import annotations

#: After the contract id: the subject of the room's sidecars (never the app's).
SIDECARS_SUBJECT_SUFFIX = "/ccr-sidecars"
#: A subject longer than this is refused before it reaches CGS (a contract id is at most a few dozen bytes).
MAX_SUBJECT_LENGTH = 256


def sidecars_subject(contract_id: str) -> str:
    """The `sub` of the tokens the room's sidecars use (AssumeRoleWithWebIdentity for an S3 store)."""
    return contract_id + SIDECARS_SUBJECT_SUFFIX

